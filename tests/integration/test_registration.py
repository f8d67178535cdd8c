# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The installed plugin registers AAND and DSKD with anomalib lazily and can never break anomalib."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_mains, run_offline

REPO = Path(__file__).parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the hub offline and ``env`` added; output captured."""
    return run_offline([sys.executable, "-c", code], REPO, **env)


def test_plain_interpreter_does_not_import_plugin() -> None:
    """The ``.pth`` hook imports neither anomalib nor torch in an interpreter that does not use them."""
    code = (
        "import sys; heavy = [m for m in sys.modules if m.split('.')[0] in ('anomalib', 'torch')]; "
        "assert not heavy, heavy"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_importing_anomalib_models_registers_aand() -> None:
    """Importing ``anomalib.models`` registers AAND and DSKD under every name form ``get_model`` accepts."""
    code = (
        "import sys, anomalib.models as m\n"
        "assert 'anomalib_kd_ext.models' in sys.modules\n"
        "for name in ('AAND', 'DSKD', 'aand', 'dskd'):\n"
        "    model = m.get_model(name, backbone='resnet18', pre_trained=False)\n"
        "    assert type(model).__name__ == name.upper(), name\n"
        "assert {'AAND', 'DSKD'} <= m.list_models(case='pascal')\n"
        "assert {'Aand', 'Dskd'} <= m.list_models(case='title')\n"
        # anomalib's snake case splits capitals (AnomalyDINO -> anomaly_d_i_n_o): ours are a_a_n_d and d_s_k_d
        "assert {'a_a_n_d', 'd_s_k_d'} <= m.list_models()\n"
        "for name in ('a_a_n_d', 'd_s_k_d'):\n"
        "    model = m.get_model(name, backbone='resnet18', pre_trained=False)\n"
        "    assert type(model).__name__ in ('AAND', 'DSKD'), name\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]


def test_autoload_hook_is_installed_with_the_package() -> None:
    """The install put the ``.pth`` hook in site-packages; without it ``anomalib`` would never see the models."""
    import site
    import sysconfig

    folders = {Path(sysconfig.get_paths()["purelib"]), *map(Path, site.getsitepackages())}
    hooks = [folder / "anomalib_kd_ext_autoload.pth" for folder in folders]
    installed = [hook for hook in hooks if hook.is_file()]
    assert installed, f"anomalib_kd_ext_autoload.pth is in none of {sorted(map(str, folders))}: reinstall the package"
    assert "anomalib_kd_ext._autoload" in installed[0].read_text()
    assert "install()" in installed[0].read_text()


def test_hook_can_be_switched_off() -> None:
    """With ``ANOMALIB_KD_EXT_AUTOLOAD=0`` importing ``anomalib.models`` does not import the plugin."""
    result = run_python(
        "import sys, anomalib.models; assert 'anomalib_kd_ext.models' not in sys.modules",
        ANOMALIB_KD_EXT_AUTOLOAD="0",
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_broken_plugin_does_not_break_anomalib() -> None:
    """A plugin that fails to import leaves anomalib usable and only warns that it could not be registered."""
    code = (
        "import sys\n"
        "sys.modules['anomalib_kd_ext.models'] = None  # makes the plugin import fail\n"
        "import anomalib.models\n"
        "from anomalib.models import Padim\n"
        "print('anomalib ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "anomalib ok" in result.stdout
    assert "could not be registered" in result.stderr


CLI_CASES = [
    ["--model", "AAND"],
    ["--model", "DSKD"],
    ["--model", "anomalib_kd_ext.models.AAND"],
    *(["--config", str(path)] for path in sorted((REPO / "configs").glob("*.yaml"))),
    ["--model", "DSKD", "--data", "ELPV"],
]


@pytest.fixture(scope="module")
def cli_outputs() -> dict[str, dict]:
    """``anomalib train <case> --print_config`` of every case, all in one fresh interpreter; by case id."""
    commands = [
        ["train", *args, *([] if "--data" in args else ["--data", "MVTecAD"]), "--print_config"] for args in CLI_CASES
    ]
    outputs = run_mains("anomalib.cli.cli:main", commands, cwd=REPO)
    return {case_id(args): output for args, output in zip(CLI_CASES, outputs, strict=True)}


def case_id(args: list[str]) -> str:
    """A case's name: the config file, or the arguments."""
    return Path(args[-1]).name if args[0] == "--config" else " ".join(args)


@pytest.mark.parametrize("model_args", CLI_CASES, ids=case_id)
def test_cli_resolves_model(model_args: list[str], cli_outputs: dict[str, dict]) -> None:
    """Short names, every config of configs/ (ours and the anomalib baselines) and the ELPV datamodule resolve."""
    result = cli_outputs[case_id(model_args)]
    assert result["status"] == 0, result["stderr"][-3000:]
    baseline = any(name in " ".join(model_args) for name in ("stfpm_paper", "reverse_distillation_paper"))
    assert ("class_path: anomalib.models." if baseline else "class_path: anomalib_kd_ext") in result["stdout"]
    if "ELPV" in model_args:
        assert "class_path: anomalib_kd_ext.data.ELPV" in result["stdout"]
