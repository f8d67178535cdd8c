# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Full and read-only disks during training: a short error, no half-written checkpoint, the previous one kept.

The real-disk tests mount a small tmpfs in a user and mount namespace (``unshare --user --map-root-user --mount``),
so they need no privileges; where the kernel or container forbids that, they are skipped and the injected-fault
tests below still run.
"""

import errno
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.engine.plugins import AnomalibCheckpointIO
from lightning.pytorch import Trainer
from PIL import Image

from anomalib_kd_ext.runtime import AtomicCheckpointIO, AtomicCheckpoints, CheckpointWriteError
from helpers import needs_tmpfs, on_small_disk


def _folder_data(root: Path) -> list[str]:
    rng = np.random.default_rng(0)
    for folder, count in [("train/good", 4), ("test/good", 2), ("test/defect", 2)]:
        (root / folder).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(root / folder / f"{index}.png")
    data = ["--data", "Folder", "--data.name", "tiny", "--data.root", str(root), "--data.normal_dir", "train/good"]
    return [
        *data,
        "--data.normal_test_dir",
        "test/good",
        "--data.abnormal_dir",
        "test/defect",
        "--data.num_workers",
        "0",
    ]


def _fit_command(data: list[str], run: Path) -> list[str]:
    model = ["--model", "AAND", "--model.backbone", "resnet18", "--model.pre_trained", "false"]
    model += ["--model.amplification_epochs", "1", "--model.distillation_epochs", "1"]
    main = "from anomalib.cli.cli import main; main()"
    return [sys.executable, "-c", main, "fit", *model, *data, "--default_root_dir", str(run)]


@needs_tmpfs
def test_training_on_a_full_disk_is_a_short_error_and_leaves_no_half_checkpoint(tmp_path: Path) -> None:
    """Stock ``anomalib fit`` into a 2 MB disk (the checkpoint is ~200 MB): one line, no truncated ``model.ckpt``.

    Before: Lightning's fsspec transaction copied its ``/tmp`` file across file systems and left a truncated
    ``model.ckpt`` behind a 200-line traceback.
    """
    disk = tmp_path / "disk"
    result = on_small_disk(disk, "2m", _fit_command(_folder_data(tmp_path / "data"), disk / "run"))
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr[result.stderr.index("CheckpointWriteError: ") :]
    assert "Could not write the checkpoint '" in message
    assert "model.ckpt' (No space left on device): free space on that disk or choose another run folder" in message
    assert "no checkpoint was written" in message
    assert len(message.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert "│" not in result.stderr


@needs_tmpfs
def test_full_disk_keeps_the_previous_checkpoint_byte_identical(tmp_path: Path) -> None:
    """A real full disk: the second, larger save fails; the first checkpoint is whole and no temporary file is left."""
    disk = tmp_path / "disk"
    script = textwrap.dedent(f"""
        import hashlib, pathlib, torch
        from anomalib_kd_ext.runtime import AtomicCheckpointIO, CheckpointWriteError
        path = pathlib.Path("{disk}/run/model.ckpt")
        AtomicCheckpointIO().save_checkpoint({{"epoch": 1, "w": torch.ones(100_000)}}, path)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            AtomicCheckpointIO().save_checkpoint({{"epoch": 2, "w": torch.zeros(200_000)}}, path)
        except CheckpointWriteError as error:
            print("ERROR", error.errno, error)
        print("SAME", hashlib.sha256(path.read_bytes()).hexdigest() == before)
        print("EPOCH", torch.load(path, weights_only=True)["epoch"])
        print("FILES", sorted(p.name for p in path.parent.iterdir()))
    """)
    result = on_small_disk(disk, "1m", [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ERROR {errno.ENOSPC} ")
    assert "the previous checkpoint there is unchanged" in lines[0]
    assert lines[1:] == ["SAME True", "EPOCH 1", "FILES ['model.ckpt']"]


@needs_tmpfs
def test_read_only_run_folder_stops_before_anything_is_written(tmp_path: Path) -> None:
    """A read-only run folder: anomalib's own ``OSError`` (EROFS, naming the folder) when it creates the version folder.

    It is raised by anomalib's CLI before the model is attached to a trainer, so the plugin cannot shorten it; the
    last line names the folder and the cause, and nothing is written.
    """
    disk = tmp_path / "disk"
    result = on_small_disk(disk, "2m", _fit_command(_folder_data(tmp_path / "data"), disk / "run"), read_only=True)
    assert result.returncode == 1
    assert f"OSError: [Errno 30] Read-only file system: '{disk}/run/AAND'" in " ".join(result.stderr.split())


def test_injected_failure_mid_save_keeps_the_previous_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs everywhere: a save that fails after its bytes are written leaves the old file and no temporary file."""
    path = tmp_path / "model.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()

    def full_disk(descriptor: int) -> None:
        del descriptor
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointWriteError, match=r"model\.ckpt' \(No space left on device\).*previous checkpoint"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_saved_checkpoint_loads_with_anomalib_safe_globals(tmp_path: Path) -> None:
    """The atomic IO is anomalib's checkpoint IO for loading: same bytes as Lightning's save, same load."""
    checkpoint = {"epoch": 3, "weights": torch.arange(10.0)}
    AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "a.ckpt")
    AnomalibCheckpointIO().save_checkpoint(checkpoint, tmp_path / "b.ckpt")
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()
    loaded = AtomicCheckpointIO().load_checkpoint(tmp_path / "a.ckpt")
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["weights"], checkpoint["weights"])


def test_callback_replaces_only_the_default_checkpoint_io() -> None:
    """Anomalib's default IO is swapped (safe globals kept); a user's own checkpoint IO is left in place."""
    trainer = Trainer(plugins=[AnomalibCheckpointIO(extra_safe_globals=[int])], logger=False, accelerator="cpu")
    AtomicCheckpoints().setup(trainer, None, "fit")
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    assert trainer.strategy.checkpoint_io.extra_safe_globals == [int]

    class Own(AnomalibCheckpointIO):
        pass

    own = Own()
    trainer = Trainer(plugins=[own], logger=False, accelerator="cpu")
    AtomicCheckpoints().setup(trainer, None, "fit")
    assert trainer.strategy.checkpoint_io is own
