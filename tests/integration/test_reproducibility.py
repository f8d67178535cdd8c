# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Same seed, same result; checkpoints reload with anomalib 2.7's ``weights_only=True`` and predict identically."""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from lightning.pytorch import seed_everything

from anomalib_kd_ext.models import AAND, DSKD
from helpers import RESNET18, fit_on_cpu


def _train(name: str, dataset: Path, work: Path, seed: int = 7) -> tuple[AAND | DSKD, dict, str]:
    seed_everything(seed, workers=True)
    model_class = AAND if name == "AAND" else DSKD
    pre_processor = model_class.configure_pre_processor(image_size=(64, 64))
    stages = {"amplification_epochs": 1, "distillation_epochs": 1} if name == "AAND" else {}
    model = model_class(**RESNET18, **stages, pre_processor=pre_processor)
    datamodule = MVTecAD(root=dataset, category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0, seed=seed)
    engine = fit_on_cpu(model, datamodule, work, default_epochs=2, deterministic=True)
    metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    return model, metrics, engine.trainer.checkpoint_callback.best_model_path


@pytest.mark.parametrize("name", ["AAND", "DSKD"])
def test_same_seed_same_weights_and_metrics(name: str, tiny_dataset: Path, tmp_path: Path) -> None:
    """Two runs with the same seed give equal weights and metrics; the checkpoint reloads weights-only, same outputs."""
    first, first_metrics, checkpoint = _train(name, tiny_dataset, tmp_path / "a")
    second, second_metrics, _ = _train(name, tiny_dataset, tmp_path / "b")
    assert first_metrics == second_metrics
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), key

    # The checkpoint reloads through torch.load(weights_only=True) (anomalib 2.7's default) and predicts the same.
    reloaded = type(first).load_from_checkpoint(checkpoint, map_location="cpu")  # saved on a GPU: cuda tensors
    first = first.cpu()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = first.eval()(images), reloaded.eval()(images)
    assert torch.equal(expected.anomaly_map, actual.anomaly_map)
    assert torch.equal(expected.pred_score, actual.pred_score)
    state = torch.load(checkpoint, weights_only=True)
    assert "state_dict" in state
