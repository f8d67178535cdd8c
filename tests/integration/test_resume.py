# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""A run interrupted mid-training resumes from anomalib's checkpoint and ends where an uninterrupted run ends."""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.runtime.resume import CHECKPOINT_KEY, capture_random_state, restore_random_state
from helpers import fit_on_cpu, tiny_datamodule, tiny_model

SEED = 11


class CrashError(RuntimeError):
    """Stands in for a killed job."""


class CrashAtEpoch(Callback):
    """Raise at the start of ``epoch``, after the checkpoint of the previous epoch was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise :class:`CrashError` when the epoch to crash at starts."""
        del pl_module
        if trainer.current_epoch == self.epoch:
            msg = f"simulated crash at the start of epoch {self.epoch}"
            raise CrashError(msg)


class EpochLog(Callback):
    """Per epoch with training batches: its number, AAND's stage and the learning rate of every optimiser."""

    def __init__(self) -> None:
        self.epochs: list[tuple] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        """Record the epoch, AAND's stage and the learning rates, once per epoch."""
        del args
        lrs = tuple(optimizer.param_groups[0]["lr"] for optimizer in trainer.optimizers)
        entry = (trainer.current_epoch, getattr(pl_module, "stage", None), lrs)
        if entry not in self.epochs:
            self.epochs.append(entry)


def _model(name: str) -> AAND | DSKD:
    # Stage lengths of 2 with a milestone at 0.5 decay both stages' learning rate after their first epoch, so a
    # schedule restored one step off shows in the weights.
    stages = {"amplification_epochs": 2, "distillation_epochs": 2, "lr_milestones": (0.5,)}
    return tiny_model(name, **(stages if name == "AAND" else {}))


def _datamodule(dataset: Path) -> MVTecAD:
    return tiny_datamodule(dataset, batch_size=3, eval_batch_size=4, seed=SEED)


def _fit(name: str, dataset: Path, work: Path, callbacks: list[Callback], ckpt_path: Path | None = None) -> AAND | DSKD:
    seed_everything(SEED, workers=True)
    model = _model(name)
    datamodule = _datamodule(dataset)
    fit_on_cpu(model, datamodule, work, default_epochs=3, ckpt_path=ckpt_path, deterministic=True, callbacks=callbacks)
    return model


@pytest.mark.parametrize(
    ("name", "crash_epoch", "stage"),
    [  # AAND in stage 1 also by test_kill9.py, through a killed `anomalib fit`: with -m slow here
        pytest.param("AAND", 1, "amplification", marks=pytest.mark.slow),
        ("AAND", 3, "distillation"),
        ("DSKD", 2, None),
    ],
    ids=["aand-stage1", "aand-stage2", "dskd"],
)
def test_resume_after_interruption(
    name: str,
    crash_epoch: int,
    stage: str | None,
    tiny_dataset: Path,
    tmp_path: Path,
) -> None:
    """A run resumed after a crash trains exactly the missing epochs and ends with the uninterrupted weights."""
    full_log = EpochLog()
    uninterrupted = _fit(name, tiny_dataset, tmp_path / "full", [full_log])

    with pytest.raises(CrashError):
        _fit(name, tiny_dataset, tmp_path / "run", [CrashAtEpoch(crash_epoch)])
    # anomalib's default checkpoint, rewritten at every epoch end: <root>/<model>/<dataset>/<category>/v0/weights/...
    (checkpoint,) = (tmp_path / "run").glob("**/weights/lightning/model.ckpt")
    state = torch.load(checkpoint, weights_only=True)  # anomalib 2.7 loads checkpoints this way
    assert CHECKPOINT_KEY in state, "no random states: is the runtime callback's entry point installed?"
    assert state["epoch"] == crash_epoch - 1
    if name == "AAND":
        assert state["aand_stage"] == ("amplification" if crash_epoch - 1 < 2 else "distillation")

    resumed_log = EpochLog()
    # A new process would seed again before building the model: do the same, then resume.
    resumed = _fit(name, tiny_dataset, tmp_path / "run", [resumed_log], ckpt_path=checkpoint)

    # The resumed run trains exactly the missing epochs, in the right stage, with the right learning rates ...
    assert resumed_log.epochs == full_log.epochs[crash_epoch:]
    if stage is not None:
        assert resumed_log.epochs[0][1] == stage
    # ... and ends with the uninterrupted run's weights.
    expected, actual = uninterrupted.state_dict(), resumed.state_dict()
    assert list(actual) == list(expected)
    differ = [key for key in expected if not torch.allclose(actual[key].float(), expected[key].float(), 1e-5, 1e-6)]
    assert differ == [], f"{name}: {len(differ)} of {len(expected)} tensors differ, e.g. {differ[:5]}"


def test_random_state_round_trip_is_weights_only_safe(tmp_path: Path) -> None:
    """The captured Python, NumPy and torch random states load with ``weights_only=True`` and restore the same draws."""
    import random

    import numpy as np

    seed_everything(5)
    path = tmp_path / "state.pt"
    torch.save(capture_random_state(), path)
    expected = (random.random(), float(np.random.rand()), torch.rand(2))  # noqa: S311, NPY002  # the global generators restored below
    restore_random_state(torch.load(path, weights_only=True))
    actual = (random.random(), float(np.random.rand()), torch.rand(2))  # noqa: S311, NPY002  # the global generators restored above
    assert actual[:2] == expected[:2]
    assert torch.equal(actual[2], expected[2])
