# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Numeric regression: a fixed seed and input must give the stored outputs.

A change that alters numbers (initialisation, layer order, loss or map arithmetic) fails here.
If the change is intended, regenerate the reference with
``KD_EXT_REGENERATE=1 python -m pytest tests/unit/models/aand/test_regression.py`` and say why in
the commit message.
"""

import os
from pathlib import Path

import torch

from anomalib_kd_ext.models.aand.loss import AmplificationLoss, GateFocalLoss, HardKnowledgeDistillationLoss
from anomalib_kd_ext.models.aand.torch_model import AANDModel

REFERENCE = Path(__file__).with_name("aand_regression.pt")


def _outputs() -> dict[str, torch.Tensor]:
    """Model outputs and losses from a fixed seed and a fixed input."""
    torch.manual_seed(0)
    model = AANDModel(backbone="resnet18", layers=("layer1", "layer2", "layer3"), pre_trained=False)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 64, 64, generator=generator)
    masks = (torch.rand(2, 1, 64, 64, generator=generator) > 0.7).float()
    with torch.no_grad():
        model.train()
        stage1 = model.amplification_forward(images, masks)
        amplified, reconstructed = model(images)
        model.eval()
        prediction = model(images)
    return {
        "anomaly_map": prediction.anomaly_map,
        "pred_score": prediction.pred_score,
        "hkd_loss": HardKnowledgeDistillationLoss(k_hard=10)(amplified, reconstructed),
        "focal_loss": GateFocalLoss()(stage1.gates, stage1.masks),
        "amplification_loss": AmplificationLoss()(stage1.features, stage1.amplified, stage1.masks),
        "gate_level0": stage1.gates[0],
    }


def test_outputs_match_reference() -> None:
    """The outputs match the stored reference (regenerated first when KD_EXT_REGENERATE=1)."""
    outputs = _outputs()
    if os.environ.get("KD_EXT_REGENERATE") == "1":
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        torch.save(outputs, REFERENCE)
    reference = torch.load(REFERENCE, weights_only=True)
    assert set(outputs) == set(reference)
    for key, value in outputs.items():
        assert torch.allclose(value, reference[key], rtol=1e-4, atol=1e-5), key
