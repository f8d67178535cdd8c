# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``kill -9`` of a real ``anomalib fit`` of AAND, in stage 1 and stage 2, then the same command with ``--ckpt_path``.

The killed process gets SIGKILL from inside itself (a callback on the command line, so the point is exact: the second
batch of an epoch, after the previous epoch's checkpoint was written). The rerun must end with the weights of an
uninterrupted run with the same seed. Lightning writes checkpoints through an fsspec transaction (a temporary file
renamed into place), so a kill during a save leaves the previous checkpoint intact; the last test checks that.
"""

import signal
import sys
from pathlib import Path

import pytest
import torch

from helpers import run_offline

# The `anomalib` console script (anomalib.cli.cli:main), preceded by the seeding that `--seed_everything` promises:
# anomalib 2.7's CLI declares the argument (cli.py, `_add_default_arguments_to_parser`) but never calls
# `seed_everything`, so two runs of the same command start from different random weights (measured here: 175 of 275
# tensors differed). Without a seed there is no "uninterrupted run with the same seed" to compare with.
SEED = 11
ANOMALIB = [
    sys.executable,
    "-c",
    "import sys; from lightning.pytorch import seed_everything; from anomalib.cli.cli import main; "
    f"seed_everything({SEED}, workers=True); sys.argv[0] = 'anomalib'; sys.exit(main())",
]
KILLER = '''
import os
import signal

from lightning.pytorch import Callback


class KillAt(Callback):
    """SIGKILL this process at the second batch of epoch ``KILL_AT_EPOCH``."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == int(os.environ["KILL_AT_EPOCH"]) and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _command(dataset: Path, root: Path, *extra: str) -> list[str]:
    return [
        *ANOMALIB,
        "fit",
        "--model",
        "AAND",
        "--model.backbone",
        "resnet18",
        "--model.pre_trained",
        "false",
        "--model.amplification_epochs",
        "2",
        "--model.distillation_epochs",
        "2",
        # a decay after each stage's first epoch: a schedule restored one step off shows in the weights
        "--model.lr_milestones",
        "[0.5]",
        "--data",
        "MVTecAD",
        "--data.root",
        str(dataset),
        "--data.category",
        "tiny",
        "--data.train_batch_size",
        "3",
        "--data.num_workers",
        "0",
        "--data.seed",
        str(SEED),
        "--seed_everything",
        str(SEED),
        "--trainer.deterministic",
        "true",
        "--trainer.enable_progress_bar",
        "false",
        "--default_root_dir",
        str(root),
        *extra,
    ]


def _final_checkpoint(root: Path) -> Path:
    """The checkpoint of the newest run version under ``root``."""
    checkpoints = sorted(root.glob("**/weights/lightning/model.ckpt"), key=lambda path: path.stat().st_mtime)
    assert checkpoints, f"no checkpoint under {root}"
    return checkpoints[-1]


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Final weights of the run nobody killed."""
    root = tmp_path_factory.mktemp("kill9_full")
    result = run_offline(_command(tiny_dataset, root), cwd=root)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return _weights(_final_checkpoint(root))


# Resuming inside stage 2 is also covered by test_resume.py (aand-stage2); SIGKILL there runs with ``-m slow``.
@pytest.mark.parametrize(
    ("kill_epoch", "stage"),
    [(1, "amplification"), pytest.param(3, "distillation", marks=pytest.mark.slow)],
    ids=["stage1", "stage2"],
)
def test_kill9_then_rerun_with_ckpt_path_ends_with_the_same_weights(
    kill_epoch: int,
    stage: str,
    uninterrupted: dict[str, torch.Tensor],
    tiny_dataset: Path,
    tmp_path: Path,
) -> None:
    """SIGKILL inside a stage, rerun with ``--ckpt_path`` on the last checkpoint: the uninterrupted run's weights."""
    (tmp_path / "killer.py").write_text(KILLER)
    root = tmp_path / "run"
    killed = run_offline(
        _command(tiny_dataset, root, "--trainer.callbacks+=killer.KillAt"),
        cwd=tmp_path,
        PYTHONPATH=str(tmp_path),
        KILL_AT_EPOCH=str(kill_epoch),
    )
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    checkpoint = _final_checkpoint(root)
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == kill_epoch - 1
    assert state["aand_stage"] == ("amplification" if kill_epoch - 1 < 2 else "distillation")

    resumed = run_offline(_command(tiny_dataset, root, "--ckpt_path", str(checkpoint)), cwd=tmp_path)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert "Restoring states from the checkpoint path" in output
    final = _final_checkpoint(root)
    assert final != checkpoint
    actual = _weights(final)
    assert list(actual) == list(uninterrupted)
    differ = [key for key in uninterrupted if not torch.allclose(actual[key].float(), uninterrupted[key].float())]
    assert differ == [], f"killed in {stage}: {len(differ)} of {len(actual)} tensors differ, e.g. {differ[:5]}"


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that dies mid-write (half the bytes written, then a full disk) leaves the old checkpoint whole."""
    import fsspec.implementations.local
    from lightning.pytorch.plugins.io import TorchCheckpointIO  # what Lightning's trainer saves with

    path = tmp_path / "model.ckpt"
    TorchCheckpointIO().save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, path)
    before = path.read_bytes()
    write = fsspec.implementations.local.LocalFileOpener.write

    def half_then_full_disk(self: object, data: bytes) -> int:
        write(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "write", half_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        TorchCheckpointIO().save_checkpoint({"epoch": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
