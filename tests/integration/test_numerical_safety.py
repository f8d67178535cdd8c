# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""No NaN/Inf in losses or maps: training on constant images, inference on constant and extreme inputs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image

from helpers import fit_on_cpu, tiny_datamodule, tiny_model


def make_constant_dataset(root: Path) -> Path:
    """Training images that are flat black, grey and white; a test defect is a white square on black."""
    base = root / "flat"
    for folder in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (base / folder).mkdir(parents=True)
    for index, value in enumerate([0, 0, 128, 128, 255, 255]):
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(base / "train/good" / f"{index:03d}.png")
    for index, value in enumerate([0, 255]):
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(base / "test/good" / f"{index:03d}.png")
        image = np.zeros((64, 64, 3), np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        image[20:40, 20:40], mask[20:40, 20:40] = 255, 255
        Image.fromarray(image).save(base / "test/defect" / f"{index:03d}.png")
        Image.fromarray(mask).save(base / "ground_truth/defect" / f"{index:03d}_mask.png")
    return root


class RecordLosses(Callback):
    """Every value a training step logs, per step."""

    def __init__(self) -> None:
        self.values: list[tuple[str, float]] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        """Record the ``train_`` values logged in this step."""
        del pl_module, args
        self.values += [(k, float(v)) for k, v in trainer.callback_metrics.items() if k.startswith("train_")]


@pytest.mark.parametrize("name", ["AAND", "DSKD"])
def test_constant_images_train_and_predict_finite(name: str, tmp_path: Path) -> None:
    """On constant images, losses, metrics, weights and outputs for extreme inputs stay finite."""
    torch.manual_seed(0)
    root = make_constant_dataset(tmp_path / "data")
    datamodule = tiny_datamodule(root, category="flat", batch_size=3, eval_batch_size=2)
    losses = RecordLosses()
    model = tiny_model(name)
    engine = fit_on_cpu(model, datamodule, tmp_path, callbacks=[losses])
    assert losses.values, "no training loss was logged"
    assert all(np.isfinite(value) for _, value in losses.values), [kv for kv in losses.values if not np.isfinite(kv[1])]
    metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    assert all(np.isfinite(value) for value in metrics.values()), metrics
    for parameter in model.parameters():
        assert torch.isfinite(parameter).all()

    model.eval()
    extremes = torch.stack([torch.zeros(3, 64, 64), torch.ones(3, 64, 64), torch.full((3, 64, 64), 1e4)])
    with torch.no_grad():
        output = model(torch.cat([extremes, -extremes[2:]]))
    assert torch.isfinite(output.anomaly_map).all()
    assert torch.isfinite(output.pred_score).all()
