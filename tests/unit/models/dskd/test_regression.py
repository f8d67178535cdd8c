# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Numeric regression: a fixed seed and input must give the stored outputs.

Regenerate (only for an intended numeric change, explained in the commit message) with
``KD_EXT_REGENERATE=1 python -m pytest tests/unit/models/dskd/test_regression.py``.
"""

import os
from pathlib import Path

import torch

from anomalib_kd_ext.models.dskd.loss import DualStudentLoss
from anomalib_kd_ext.models.dskd.torch_model import DSKDModel

REFERENCE = Path(__file__).with_name("dskd_regression.pt")


def _outputs() -> dict[str, torch.Tensor]:
    """Model outputs and losses from a fixed seed and a fixed input."""
    torch.manual_seed(0)
    model = DSKDModel(backbone="resnet18", layers=("layer1", "layer2", "layer3"), pre_trained=False)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        losses = DualStudentLoss()(model.train()(images))
        prediction = model.eval()(images)
    return {
        "anomaly_map": prediction.anomaly_map,
        "pred_score": prediction.pred_score,
        "encoder_loss": losses["encoder_loss"],
        "decoder_loss": losses["decoder_loss"],
    }


def test_outputs_match_reference() -> None:
    """The outputs match the stored reference (regenerated first when KD_EXT_REGENERATE=1)."""
    outputs = _outputs()
    if os.environ.get("KD_EXT_REGENERATE") == "1":
        torch.save(outputs, REFERENCE)
    reference = torch.load(REFERENCE, weights_only=True)
    assert set(outputs) == set(reference)
    for key, value in outputs.items():
        assert torch.allclose(value, reference[key], rtol=1e-4, atol=1e-5), key
