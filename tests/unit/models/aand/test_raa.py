# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Residual Anomaly Amplification: gate, generator, positional encoding."""

import math

import pytest
import torch

from anomalib_kd_ext.models.aand.raa import (
    MatchingGuidedResidualGate,
    ResidualAnomalyAmplification,
    positional_encoding_2d,
)


def _reference_encoding(channels: int, height: int, width: int) -> torch.Tensor:
    """The encoding written element by element: columns in the first half, rows in the second."""
    half = channels // 2
    encoding = torch.zeros(channels, height, width)
    for k in range(half // 2):
        frequency = math.exp(-(2 * k) * math.log(1e4) / half)
        for y in range(height):
            for x in range(width):
                encoding[2 * k, y, x] = math.sin(x * frequency)
                encoding[2 * k + 1, y, x] = math.cos(x * frequency)
                encoding[half + 2 * k, y, x] = math.sin(y * frequency)
                encoding[half + 2 * k + 1, y, x] = math.cos(y * frequency)
    return encoding


def test_positional_encoding_values_and_size() -> None:
    """The positional encoding equals the element-wise reference and has the requested shape."""
    assert torch.allclose(positional_encoding_2d(8, 3, 5), _reference_encoding(8, 3, 5), atol=1e-6)
    assert positional_encoding_2d(16, 7, 9).shape == (16, 7, 9)


def test_positional_encoding_needs_multiple_of_four() -> None:
    """A channel count not divisible by 4 raises ValueError."""
    with pytest.raises(ValueError, match="divisible by 4"):
        positional_encoding_2d(6, 4, 4)


def test_positional_encoding_not_saved_and_follows_feature_size() -> None:
    """The positional encoding is not in the state dict and follows the feature size."""
    raa = ResidualAnomalyAmplification(channels=16, num_items=5)
    assert all("pos" not in key for key in raa.state_dict())
    for size in [(8, 8), (10, 6)]:
        output = raa(torch.rand(2, 16, *size))
        assert output.gate.shape == (2, 1, *size)
        assert output.amplified.shape == (2, 16, *size)


def test_gate_strictly_between_zero_and_one() -> None:
    """The gate stays strictly between 0 and 1, even for large features."""
    torch.manual_seed(0)
    gate = MatchingGuidedResidualGate(channels=32, hidden_channels=64, num_items=50)
    w = gate(torch.randn(4, 32, 12, 12) * 10)
    assert (w > 0).all()
    assert (w < 1).all()


def test_amplified_equals_features_where_gate_is_zero() -> None:
    """Features are unchanged where the gate is 0 and scaled by 1 + scale where it is 1."""
    raa = ResidualAnomalyAmplification(channels=16, num_items=5)
    features = torch.rand(2, 16, 8, 8)
    gate = torch.zeros(2, 1, 8, 8)
    gate[:, :, :4] = 1.0
    output = raa(features, gate_override=gate)
    assert torch.equal(output.amplified[:, :, 4:], features[:, :, 4:])
    expected = features[:, :, :4] * (1 + output.scale[:, :, :4])
    assert torch.allclose(output.amplified[:, :, :4], expected)


def test_residual_is_gate_times_scaled_features() -> None:
    """The added residual is gate times scale times features, with the scale below 1 in magnitude."""
    raa = ResidualAnomalyAmplification(channels=16, num_items=5)
    features = torch.rand(2, 16, 8, 8)
    output = raa(features)
    assert torch.allclose(output.amplified - features, output.gate * output.scale * features, atol=1e-6)
    assert (output.scale.abs() < 1).all()


def test_memory_and_mlp_sizes() -> None:
    """The memory bank and the MLP widths have the expected sizes."""
    raa = ResidualAnomalyAmplification(channels=1024, num_items=50)
    assert raa.gate.memory.shape == (100, 1024)
    assert raa.gate.query_projector[0].out_channels == 1024  # hidden = min(2C, 1024)
    assert ResidualAnomalyAmplification(channels=64).generator.generator[0].out_channels == 128


def test_no_nan_on_all_zero_features() -> None:
    """All-zero features give a finite gate and finite amplified features."""
    raa = ResidualAnomalyAmplification(channels=16, num_items=5)
    output = raa(torch.zeros(1, 16, 8, 8))
    assert torch.isfinite(output.gate).all()
    assert torch.isfinite(output.amplified).all()


def test_gate_off_gives_ungated_residual() -> None:
    """Without the gate, the whole residual is added and the gate output is None."""
    raa = ResidualAnomalyAmplification(channels=16, num_items=5, use_gate=False)
    features = torch.rand(1, 16, 8, 8)
    output = raa(features)
    assert output.gate is None
    assert torch.allclose(output.amplified, features * (1 + output.scale))


def test_convolutions_are_kaiming_normal_fan_out() -> None:
    """Every RAA convolution (gate and generator) has Kaiming-normal (fan_out, ReLU) weights: std sqrt(2 / fan_out)."""
    torch.manual_seed(0)
    raa = ResidualAnomalyAmplification(channels=64)
    convolutions = [m for m in raa.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) == 6
    for conv in convolutions:
        expected = (2.0 / conv.out_channels) ** 0.5  # 1x1 kernels: fan_out = out_channels
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(conv.weight.mean().item()) < 0.1 * expected
