# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DSKD Lightning module: one epoch trains both students and leaves the teacher alone."""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_kd_ext.models import DSKD


def test_one_epoch_trains_students_only(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """One epoch changes both students and the embedding but not the teacher; testing gives metrics."""
    seed_everything(0)
    model = DSKD(**resnet18, pre_processor=DSKD.configure_pre_processor(image_size=(64, 64)))
    before = {name: p.detach().clone() for name, p in model.model.named_parameters()}
    datamodule = MVTecAD(root=tiny_dataset, category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0)
    engine = Engine(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    changed = dict.fromkeys(("teacher", "encoder_student", "embedding", "decoder_student"), False)
    for name, parameter in model.model.named_parameters():
        if not torch.equal(parameter.detach(), before[name]):
            changed[name.split(".")[0]] = True
    assert changed == {"teacher": False, "encoder_student": True, "embedding": True, "decoder_student": True}
    metrics = engine.test(model=model, datamodule=datamodule)[0]
    assert {"image_AUROC", "pixel_AUROC", "pixel_AUPRO"} <= set(metrics)


def test_checkpoint_round_trip_with_weights_only(tiny_dataset: Path, tmp_path: Path, resnet18: dict) -> None:
    """A checkpoint reloads with weights_only and gives the same anomaly maps."""
    seed_everything(0)
    model = DSKD(**resnet18, df_source="both", pre_processor=DSKD.configure_pre_processor(image_size=(64, 64)))
    datamodule = MVTecAD(root=tiny_dataset, category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, max_epochs=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    reloaded = DSKD.load_from_checkpoint(engine.trainer.checkpoint_callback.best_model_path)  # weights_only=True
    assert reloaded.model.df_source == "both"
    images = torch.rand(2, 3, 64, 64)
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(images).anomaly_map, reloaded(images).anomaly_map)


@pytest.mark.parametrize(("kwargs", "match"), [({"betas": (0.5,)}, "betas"), ({"student_weights": (1.0,)}, "student")])
def test_invalid_arguments(kwargs: dict, match: str, resnet18: dict) -> None:
    """Each invalid constructor argument raises a ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        DSKD(**resnet18, **kwargs)
