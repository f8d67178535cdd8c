# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND torch model: shapes in every mode and at several input sizes."""

import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_kd_ext.models.aand.torch_model import AANDModel, downsample_mask


@pytest.fixture(scope="module")
def model(resnet18: dict) -> AANDModel:
    """An untrained ResNet-18 AAND model shared by the module's tests."""
    torch.manual_seed(0)
    return AANDModel(**resnet18)


@pytest.mark.parametrize("size", [(256, 256), (320, 224), (64, 96)])
def test_inference_shapes(model: AANDModel, size: tuple[int, int], device: torch.device) -> None:
    """Inference gives a full-size float32 anomaly map and a score equal to its maximum, on every device."""
    model.to(device).eval()
    with torch.no_grad():
        output = model(torch.rand(2, 3, *size, device=device))
    assert output.anomaly_map.device.type == device.type
    assert output.anomaly_map.dtype == torch.float32
    assert isinstance(output, InferenceBatch)
    assert output.anomaly_map.shape == (2, 1, *size)
    assert output.pred_score.shape == (2, 1)
    assert torch.allclose(output.pred_score, output.anomaly_map.amax(dim=(-2, -1)))


def test_training_mode_returns_amplified_and_reconstruction(model: AANDModel, device: torch.device) -> None:
    """Training mode returns frozen amplified features and trainable reconstructions alike in shape."""
    model.to(device).train()
    amplified, reconstructed = model(torch.rand(2, 3, 256, 256, device=device))
    assert [a.shape for a in amplified] == [r.shape for r in reconstructed]
    assert [a.shape[1:] for a in amplified] == [(64, 64, 64), (128, 32, 32), (256, 16, 16)]
    assert not any(a.requires_grad for a in amplified)  # teacher and RAA are frozen in stage 2
    assert all(r.requires_grad for r in reconstructed)


def test_amplification_forward_uses_ground_truth_gate(model: AANDModel, device: torch.device) -> None:
    """The amplification forward keeps normal positions unchanged and returns trainable gates."""
    model.to(device).train()
    masks = torch.zeros(2, 1, 64, 64, device=device)
    masks[:, :, :32] = 1.0
    output = model.amplification_forward(torch.rand(2, 3, 64, 64, device=device), masks)
    for feature, amplified, mask, gate in zip(
        output.features,
        output.amplified,
        output.masks,
        output.gates,
        strict=True,
    ):
        normal = ~mask.expand_as(feature)
        assert torch.equal(amplified[normal], feature[normal])
        assert gate.shape == mask.shape
        assert gate.requires_grad


def test_downsample_mask_pools_then_thresholds() -> None:
    """Mask downsampling average-pools, then thresholds the coverage."""
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 0, 0] = 1.0  # a quarter of the top-left 2x2 cell: 0.25 < 0.3
    mask[..., 2:, 2:] = 1.0
    assert downsample_mask(mask, (2, 2)).flatten().tolist() == [False, False, False, True]


def test_unsupported_size_is_a_clear_error(model: AANDModel) -> None:
    """An input size that is not a multiple of 32 raises a ValueError saying so."""
    model.cpu().eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 100, 100))
