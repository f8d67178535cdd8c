# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND Lightning module: one fit runs both stages, each training only its own parameters."""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from anomalib_kd_ext.models import AAND
from anomalib_kd_ext.models.aand.schedule import step_milestones


def _small_aand(resnet18: dict, **kwargs: object) -> AAND:
    """Build an AAND on the untrained ResNet-18 ``resnet18`` with 64x64 inputs."""
    return AAND(**resnet18, pre_processor=AAND.configure_pre_processor(image_size=(64, 64)), **kwargs)


class ParameterWatcher(Callback):
    """Records, per epoch, the stage, which parameter groups changed, and the learning rates."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self._before: dict[str, torch.Tensor] = {}

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Snapshot every parameter before the epoch trains."""
        del trainer
        self._before = {name: p.detach().clone() for name, p in pl_module.model.named_parameters()}

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the stage, the changed parameter groups, the learning rates and the student's gradients."""
        changed = {"teacher": False, "raa": False, "student": False}
        for name, parameter in pl_module.model.named_parameters():
            if not torch.equal(parameter.detach(), self._before[name]):
                changed[name.split(".")[0]] = True
        optimizers = trainer.optimizers
        self.epochs.append(
            {
                "stage": pl_module.stage,
                "changed": changed,
                "lr": [o.param_groups[0]["lr"] for o in optimizers],
                "student_grads": any(p.grad is not None for p in pl_module.model.student.parameters()),
            },
        )


def _fit(model: AAND, dataset: Path, tmp_path: Path, callbacks: list[Callback]) -> Engine:
    """Fit ``model`` on the tiny dataset on the CPU and return the engine."""
    seed_everything(0)
    datamodule = MVTecAD(root=dataset, category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0)
    engine = Engine(
        default_root_dir=tmp_path,
        callbacks=callbacks,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        logger=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    return engine


def test_stage_switch_and_parameter_partition(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """Amplification trains only the RAA, distillation only the student; the checkpoint keeps both."""
    model = _small_aand(resnet18, amplification_epochs=2, distillation_epochs=1)
    assert model.trainer_arguments["max_epochs"] == 3
    watcher = ParameterWatcher()
    engine = _fit(model, tiny_dataset, tmp_path, [watcher])
    assert [e["stage"] for e in watcher.epochs] == ["amplification", "amplification", "distillation"]
    for epoch in watcher.epochs[:2]:
        assert epoch["changed"] == {"teacher": False, "raa": True, "student": False}
        assert not epoch["student_grads"]
    assert watcher.epochs[2]["changed"] == {"teacher": False, "raa": False, "student": True}
    logged = engine.trainer.callback_metrics
    assert {"train_amplification_loss", "train_gate_precision", "train_hkd_loss"} <= logged.keys()
    assert "train_rd_loss" not in logged

    checkpoint = torch.load(engine.trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert checkpoint["aand_stage"] == "distillation"
    assert len(checkpoint["optimizer_states"]) == 2


def test_learning_rate_steps_per_stage(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """Each stage's learning rate decays at its own milestone, counted within that stage."""
    # Stage 1 of 2 epochs decays after epoch int(0.5*2)=1; stage 2 of 2 epochs decays after epoch 1 too.
    model = _small_aand(
        resnet18,
        amplification_epochs=2,
        distillation_epochs=2,
        lr_milestones=(0.5,),
        learning_rate=0.01,
    )
    watcher = ParameterWatcher()
    _fit(model, tiny_dataset, tmp_path, [watcher])
    lrs = [epoch["lr"] for epoch in watcher.epochs]
    # lr read before the scheduler step of the epoch end: [stage-1 lr, stage-2 lr]
    assert lrs[0] == pytest.approx([0.01, 0.01])
    assert lrs[1] == pytest.approx([0.002, 0.01])
    assert lrs[2] == pytest.approx([0.002, 0.01])
    assert lrs[3] == pytest.approx([0.002, 0.002])


def test_raa_and_hkd_off_is_plain_reverse_distillation(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """Without RAA and HKD only the distillation stage runs, logging the RD loss and no AAND loss."""
    model = _small_aand(resnet18, amplification_epochs=5, distillation_epochs=1, use_raa=False, use_hkd=False)
    assert model.model.raa is None
    assert model.trainer_arguments["max_epochs"] == 1
    watcher = ParameterWatcher()
    engine = _fit(model, tiny_dataset, tmp_path, [watcher])
    assert [e["stage"] for e in watcher.epochs] == ["distillation"]
    logged = engine.trainer.callback_metrics
    assert "train_rd_loss" in logged  # RD4AD's loss, not logged under the HKD name
    assert not {"train_hkd_loss", "train_amplification_loss", "train_gate_precision"} & logged.keys()


def test_step_milestones() -> None:
    """Milestone fractions become the whole epochs the reference's float milestones hit, each once."""
    assert step_milestones(100, (0.8, 0.9)) == [80, 90]
    assert step_milestones(120, (0.8, 0.9)) == [96, 108]
    assert step_milestones(30, (0.8, 0.9)) == [24, 27]
    assert step_milestones(10, (0.8, 0.9)) == [8, 9]
    # The reference's float milestones 2.4 / 2.7 and 4.0 / 4.5 never match a whole epoch: no double decay.
    assert step_milestones(3, (0.8, 0.9)) == []
    assert step_milestones(5, (0.8, 0.9)) == [4]
    assert step_milestones(4, (0.5, 0.5)) == [2]


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 7, 10, 30, 100, 120])
def test_step_milestones_match_multisteplr_with_float_milestones(epochs: int) -> None:
    """The learning rate of every epoch equals that of MultiStepLR fed the reference's float milestones."""
    import torch

    def rates(milestones: list[float]) -> list[float]:
        """Learning rate of every epoch under MultiStepLR with ``milestones``."""
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
        values = []
        for _ in range(epochs):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return values

    assert rates(step_milestones(epochs, (0.8, 0.9))) == pytest.approx(rates([0.8 * epochs, 0.9 * epochs]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"amplification_epochs": -1}, "amplification_epochs"),
        ({"distillation_epochs": 0}, "distillation_epochs"),
        ({"betas": (0.5,)}, "betas"),
        ({"foreground": "everything"}, "foreground"),
        ({"k_hard": 0}, "k_hard"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str, resnet18: dict) -> None:
    """Each invalid constructor argument raises a ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        AAND(**resnet18, **kwargs)


def test_unsupported_input_size_fails_at_construction(resnet18: dict) -> None:
    """An input size that is not a multiple of 32 is refused at construction."""
    with pytest.raises(ValueError, match="multiples of 32"):
        AAND(**resnet18, pre_processor=AAND.configure_pre_processor(image_size=(72, 72)))


def test_unsupported_input_size_fails_before_training(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """A pre-processor swapped in after construction is checked when fitting starts, before any step."""
    model = AAND(**resnet18)
    model.pre_processor = AAND.configure_pre_processor(image_size=(72, 72))
    with pytest.raises(ValueError, match="multiples of 32"):
        _fit(model, tiny_dataset, tmp_path, [])


def test_missing_texture_folder_fails_before_training(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """A missing texture folder makes fitting fail with a FileNotFoundError naming it."""
    model = _small_aand(resnet18, texture_dir=str(tmp_path / "dtd_missing"))
    with pytest.raises(FileNotFoundError, match="dtd_missing"):
        _fit(model, tiny_dataset, tmp_path, [])
