# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The upstream patch generator on a copy of the installed anomalib: lint-clean, importable, trainable, tested."""

import os
import shutil
import sys
from pathlib import Path

import anomalib
import pytest

from helpers import run_offline

REPO = Path(__file__).parents[2]
RUFF_CONFIG = REPO / "tests" / "data" / "anomalib_ruff.toml"
MYPY_CONFIG = REPO / "tests" / "data" / "anomalib_mypy.toml"


@pytest.fixture(scope="module")
def patched_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A copy of the installed anomalib as ``src/anomalib`` with the generated patch, and the files written."""
    root = tmp_path_factory.mktemp("anomalib_clone")
    shutil.copytree(
        Path(anomalib.__file__).parent,
        root / "src" / "anomalib",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # anomalib's own ruff settings at the clone's root, where its pyproject.toml would hold them.
    shutil.copyfile(RUFF_CONFIG, root / "ruff.toml")
    command = [sys.executable, "-m", "anomalib_kd_ext.upstream", str(root), "--tests-dir", str(REPO / "tests")]
    result = run_offline(command, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    written = [Path(line) for line in result.stdout.splitlines() if line.startswith(str(root))]
    return root, written


def test_patch_has_models_components_tests_docs_and_registration(patched_tree: tuple[Path, list[Path]]) -> None:
    """The patch writes models, components, tests and docs, free of ``anomalib_kd_ext``, and registers both models."""
    root, written = patched_tree
    package = root / "src" / "anomalib" / "models"
    for path in (
        package / "image" / "aand" / "lightning_model.py",
        package / "image" / "aand" / "README.md",
        package / "image" / "dskd" / "torch_model.py",
        package / "components" / "distillation" / "teacher.py",
        root / "tests" / "unit" / "models" / "image" / "aand" / "test_loss.py",
        root / "tests" / "unit" / "models" / "image" / "aand" / "aand_regression.pt",
        root / "docs" / "source" / "markdown" / "guides" / "reference" / "models" / "image" / "dskd.md",
    ):
        assert path in written, path
        assert path.is_file(), path
    code = [path for path in written if path.suffix in {".py", ".md"}]
    assert not [path for path in code if "anomalib_kd_ext" in path.read_text()]
    assert "from .aand import AAND" in (package / "image" / "__init__.py").read_text()
    assert "    DSKD,\n" in (package / "__init__.py").read_text()
    assert (package / "image" / "aand" / "loss.py").read_text().startswith("# Copyright (C) ")


def _code_lines(text: str) -> tuple[list[str], set[tuple]]:
    """The non-blank lines outside import statements (at any depth), and the imports as (module, name, alias, level)."""
    import ast

    tree = ast.parse(text)
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    inside = {line for node in imports for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
    lines = [line for number, line in enumerate(text.splitlines(), 1) if number not in inside and line.strip()]
    names = {
        (getattr(node, "module", None), alias.name, alias.asname, getattr(node, "level", 0))
        for node in imports
        for alias in node.names
    }
    return lines, names


def test_generated_model_files_are_the_plugins_modulo_the_import_prefix(
    patched_tree: tuple[Path, list[Path]],
) -> None:
    """Every model and component file of the patch is the plugin's own, line for line.

    Only the file notice, the import prefix (``anomalib_kd_ext.models`` -> ``anomalib.models``) and the import order
    that the prefix changes may differ.
    """
    from anomalib_kd_ext.upstream import CODE_FOLDERS, with_anomalib_imports, without_header

    root, _ = patched_tree
    plugin = Path(__import__("anomalib_kd_ext").__file__).parent
    compared = 0
    for source_folder, target_folder in CODE_FOLDERS.items():
        names = {path.name for path in (root / "src" / "anomalib" / target_folder).glob("*.py")}
        assert names == {path.name for path in (plugin / source_folder).glob("*.py")}, target_folder
        for source in sorted((plugin / source_folder).glob("*.py")):
            target = root / "src" / "anomalib" / target_folder / source.name
            expected = with_anomalib_imports(without_header(source.read_text()))
            assert _code_lines(without_header(target.read_text())) == _code_lines(expected), target
            compared += 1
    assert compared >= 20, compared


def test_generator_is_idempotent(patched_tree: tuple[Path, list[Path]]) -> None:
    """Running the generator again on the patched tree changes no written file."""
    root, written = patched_tree
    before = {path: path.read_bytes() for path in written}
    result = run_offline(
        [sys.executable, "-m", "anomalib_kd_ext.upstream", str(root), "--tests-dir", str(REPO / "tests")],
        root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path: path.read_bytes() for path in written} == before


# ~40 s of mypy over the patched tree: with -m slow (CI). The default suite has the same check closer at hand: the
# patch's code is the plugin's (test_generated_model_files_are_the_plugins_modulo_the_import_prefix), and `mypy src`
# runs it with anomalib's settings in the lint step.
@pytest.mark.slow
def test_patch_passes_anomalib_mypy_and_bandit(patched_tree: tuple[Path, list[Path]]) -> None:
    """The generated model code passes mypy and bandit as anomalib's pre-commit runs them (its settings)."""
    root, written = patched_tree
    code = [str(path) for path in written if path.suffix == ".py" and (root / "src") in path.parents]
    assert code
    # errors of the modules the patch imports (anomalib itself, at this environment's library versions) are not its own
    mypy = [sys.executable, "-m", "mypy", "--config-file", str(MYPY_CONFIG), "--follow-imports", "silent", *code]
    checked = run_offline(mypy, cwd=root, MYPYPATH=str(root / "src"))
    assert checked.returncode == 0, checked.stdout[-5000:]
    bandit = run_offline([sys.executable, "-m", "bandit", "-q", "-ll", "-iii", *code], cwd=root)
    assert bandit.returncode == 0, bandit.stdout[-5000:]


def test_patch_passes_anomalib_lint(patched_tree: tuple[Path, list[Path]]) -> None:
    """The generated Python files pass ``ruff check`` and ``ruff format --check`` with anomalib's ruff settings."""
    root, written = patched_tree
    python = [str(path) for path in written if path.suffix == ".py"]
    check = run_offline([sys.executable, "-m", "ruff", "check", "--no-cache", *python], cwd=root)
    assert check.returncode == 0, check.stdout[-5000:]
    formatted = run_offline([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *python], cwd=root)
    assert formatted.returncode == 0, formatted.stdout[-3000:]


def test_not_a_source_tree_is_refused(tmp_path: Path) -> None:
    """A folder that is not an anomalib source tree is refused and left empty."""
    result = run_offline([sys.executable, "-m", "anomalib_kd_ext.upstream", str(tmp_path)], cwd=tmp_path)
    assert result.returncode != 0
    assert "is not an anomalib source tree" in result.stderr
    assert not list(tmp_path.iterdir())


FIT_IN_COPY = """
import sys
from pathlib import Path

import anomalib
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from anomalib.models import AAND, DSKD, get_model, list_models

assert Path(anomalib.__file__).is_relative_to(Path(sys.argv[1])), anomalib.__file__
assert "anomalib_kd_ext.models" not in sys.modules, "the plugin was imported"
assert {"AAND", "DSKD"} <= list_models(case="pascal")
assert {"a_a_n_d", "d_s_k_d"} <= list_models()
assert AAND.__module__ == "anomalib.models.image.aand.lightning_model"
assert type(get_model("dskd", backbone="resnet18", pre_trained=False)) is DSKD

model = AAND(
    backbone="resnet18",
    pre_trained=False,
    amplification_epochs=1,
    distillation_epochs=1,
    pre_processor=AAND.configure_pre_processor(image_size=(64, 64)),
)
datamodule = MVTecAD(root=sys.argv[2], category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0)
engine = Engine(
    default_root_dir=sys.argv[3], accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=2
)
engine.fit(model=model, datamodule=datamodule)
assert engine.trainer.current_epoch == 2
print("fit ok")
"""


def test_patched_anomalib_imports_lists_and_fits_without_the_plugin(
    patched_tree: tuple[Path, list[Path]],
    tiny_dataset: Path,
    tmp_path: Path,
) -> None:
    """The patched anomalib lists and builds AAND and DSKD and fits AAND, all without importing the plugin."""
    root, _ = patched_tree
    command = [sys.executable, "-c", FIT_IN_COPY, str(root / "src"), str(tiny_dataset), str(tmp_path)]
    result = run_offline(command, cwd=tmp_path, PYTHONPATH=str(root / "src"), ANOMALIB_KD_EXT_AUTOLOAD="0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fit ok" in result.stdout


def test_generated_tests_pass_in_the_patched_tree(patched_tree: tuple[Path, list[Path]]) -> None:
    """The fast generated tests (losses, RAA, anomaly map, numeric regressions) run against the copy."""
    root, _ = patched_tree
    tests = root / "tests" / "unit" / "models"
    selected = [
        tests / "image" / "aand" / "test_loss.py",
        tests / "image" / "aand" / "test_raa.py",
        tests / "image" / "aand" / "test_regression.py",
        tests / "image" / "dskd" / "test_loss.py",
        tests / "image" / "dskd" / "test_regression.py",
        tests / "components" / "distillation" / "test_anomaly_map.py",
    ]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(root),
        *map(str, selected),
    ]
    result = run_offline(
        command,
        cwd=root,
        PYTHONPATH=f"{root / 'src'}{os.pathsep}{root}",
        ANOMALIB_KD_EXT_AUTOLOAD="0",
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert " passed" in result.stdout
    assert "anomalib_kd_ext" not in result.stdout


@pytest.mark.parametrize(
    "config",
    [  # with -m slow: AAND fits in the patched tree by default (test_patched_anomalib_imports_lists_and_fits...)
        pytest.param("stfpm_lite0.yaml", marks=pytest.mark.slow),
        pytest.param("dskd_lite0.yaml", marks=pytest.mark.slow),
        pytest.param("aand_lite0.yaml", marks=pytest.mark.slow),
    ],
)
def test_anomalib_benchmark_runs_the_shipped_configs_in_the_patched_tree(
    patched_tree: tuple[Path, list[Path]],
    tiny_dataset: Path,
    lite0_weights: str,
    tmp_path: Path,
    config: str,
) -> None:
    """``anomalib benchmark`` with our configs (1 epoch a stage, the tiny dataset) trains, tests and writes its row."""
    import pandas as pd
    import yaml

    from anomalib_kd_ext.models.components.teacher import save_timm_local_dir

    root, _ = patched_tree
    backbone = save_timm_local_dir("tf_efficientnet_lite0", lite0_weights, tmp_path / "lite0_timm")
    settings = yaml.safe_load((REPO / "configs" / "benchmark" / config).read_text())
    model = settings["benchmark"]["model"]
    model["init_args"]["backbone"] = backbone
    for key in ("amplification_epochs", "distillation_epochs"):
        if key in model["init_args"]:
            model["init_args"][key] = 1
    settings["benchmark"]["data"]["init_args"].update(
        root=str(tiny_dataset),
        category={"grid": ["tiny"]},
        train_batch_size=4,
        eval_batch_size=4,
    )
    (tmp_path / "benchmark.yaml").write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-c", "from anomalib.cli.cli import main; main()", "benchmark", "--config"]
    result = run_offline(
        [*command, "benchmark.yaml"],
        cwd=tmp_path,
        PYTHONPATH=str(root / "src"),
        ANOMALIB_KD_EXT_AUTOLOAD="0",
        PL_TRAINER_MAX_EPOCHS="1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "There were some errors" not in result.stdout + result.stderr, tmp_path / "runs" / "pipeline.log"
    (csv,) = (tmp_path / "runs" / "benchmark").glob("*/results.csv")
    rows = pd.read_csv(csv)
    assert list(rows["model.class_path"]) == [model["class_path"]]
    assert rows["image_AUROC"].between(0, 1).all()
    assert (rows["fit_duration"] > 0).all()
