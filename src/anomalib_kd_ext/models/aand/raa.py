# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Residual Anomaly Amplification (RAA): the side modules that advance the frozen teacher.

One RAA module sits on each teacher level with ``C`` channels. It adds a residual to the teacher
feature ``F`` that is meant to be zero on normal positions and to push anomalous features away
from normal ones:

    ``F_adv = F + w * (s * F) = F * (1 + w * s)``

- ``w`` in (0, 1): the Matching-guided Residual Gate (MRG) - the softmax mass, over a learnable
  memory of ``L`` normal and ``L`` anomaly prototypes, that falls on the anomaly prototypes;
- ``s`` in (-1, 1): the Attribute-scaling Residual Generator (ASRG) - a per-position, per-channel
  scale.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.aand.raa import ResidualAnomalyAmplification
    >>> raa = ResidualAnomalyAmplification(channels=64)
    >>> amplified, gate, scale = raa(torch.rand(2, 64, 16, 16))
    >>> amplified.shape, gate.shape
    (torch.Size([2, 64, 16, 16]), torch.Size([2, 1, 16, 16]))
"""

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from anomalib_kd_ext.models.components import EPS


def positional_encoding_2d(channels: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sinusoidal positional encoding ``P`` of shape (C, H, W).

    The first half of the channels encodes the column, the second half the row, each as interleaved
    sine/cosine pairs with wavelengths growing geometrically up to ``10000`` (as in the AAND and
    DETR code). It is computed for the actual feature size, so any input size works.

    Raises:
        ValueError: If ``channels`` is not a multiple of 4.
    """
    if channels % 4:
        msg = f"The 2-D positional encoding needs a channel count divisible by 4, got {channels}."
        raise ValueError(msg)
    half = channels // 2
    div_term = torch.exp(torch.arange(0, half, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / half))

    def encode(length: int) -> torch.Tensor:  # (half, length): rows sin_0, cos_0, sin_1, cos_1, ...
        angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * div_term[None, :]
        return torch.stack([angles.sin(), angles.cos()], dim=2).reshape(length, half).transpose(0, 1)

    columns = encode(width)[:, None, :].expand(half, height, width)
    rows = encode(height)[:, :, None].expand(half, height, width)
    return torch.cat([columns, rows], dim=0)


def _mlp(channels: int, hidden_channels: int) -> nn.Sequential:
    """Three 1x1 convolutions with bias, ReLU in between: C -> hidden -> hidden -> C.

    Weights are Kaiming-normal (fan_out, ReLU gain) as in the AAND reference; PyTorch's default init would start
    the generator's pre-tanh output about 15x smaller, i.e. with almost no amplification. Biases keep PyTorch's init.
    """
    mlp = nn.Sequential(
        nn.Conv2d(channels, hidden_channels, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, channels, kernel_size=1),
    )
    for layer in mlp:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return mlp


class MatchingGuidedResidualGate(nn.Module):
    """Matching-guided Residual Gate (MRG), the gate ``w`` of RAA.

    ``q = phi(F + P)`` is matched by cosine similarity against a memory of ``2L`` items (items
    ``0..L-1`` normal prototypes, ``L..2L-1`` anomaly prototypes); with a softmax at temperature
    ``tau`` over the items, ``w`` is the total probability of the anomaly items.

    Args:
        channels (int): Feature channels ``C``.
        hidden_channels (int): Width of the query projector ``phi``.
        num_items (int): Prototypes per bank ``L``. Defaults to ``50``.
        temperature (float): Softmax temperature ``tau``. Defaults to ``0.2``.
    """

    def __init__(self, channels: int, hidden_channels: int, num_items: int = 50, temperature: float = 0.2) -> None:
        super().__init__()
        self.num_items = num_items
        self.temperature = temperature
        self.query_projector = _mlp(channels, hidden_channels)
        self.memory = nn.Parameter(torch.randn(2 * num_items, channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the gate ``w`` (N, 1, H, W), strictly inside (0, 1), for features (N, C, H, W)."""
        _, channels, height, width = features.shape
        position = positional_encoding_2d(channels, height, width, device=features.device).to(features.dtype)
        query = F.normalize(self.query_projector(features + position), dim=1, eps=EPS)
        memory = F.normalize(self.memory, dim=1, eps=EPS)
        similarity = torch.einsum("nchw,mc->nmhw", query, memory)
        attention = torch.softmax(similarity / self.temperature, dim=1)
        return attention[:, self.num_items :].sum(dim=1, keepdim=True)


class AttributeScalingResidualGenerator(nn.Module):
    """Attribute-scaling Residual Generator (ASRG): the scale ``s = tanh(psi(F))`` of RAA.

    Args:
        channels (int): Feature channels ``C``.
        hidden_channels (int): Width of the generator ``psi``.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.generator = _mlp(channels, hidden_channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the scale ``s`` (N, C, H, W) in (-1, 1)."""
        return torch.tanh(self.generator(features))


class RAAOutput(NamedTuple):
    """What one RAA module returns."""

    amplified: torch.Tensor  # F_adv, (N, C, H, W)
    gate: torch.Tensor | None  # predicted w, (N, 1, H, W); None when the gate is switched off
    scale: torch.Tensor  # s, (N, C, H, W)


class ResidualAnomalyAmplification(nn.Module):
    """RAA on one teacher level: ``F_adv = F * (1 + w * s)``.

    Args:
        channels (int): Feature channels ``C``.
        num_items (int): Prototypes per memory bank ``L``. Defaults to ``50``.
        temperature (float): Softmax temperature of the gate. Defaults to ``0.2``.
        use_gate (bool): With ``False`` (ablation "gate off") the residual is not gated:
            ``F_adv = F * (1 + s)`` everywhere. Defaults to ``True``.
    """

    def __init__(self, channels: int, num_items: int = 50, temperature: float = 0.2, use_gate: bool = True) -> None:
        super().__init__()
        hidden_channels = min(2 * channels, 1024)
        self.gate = MatchingGuidedResidualGate(channels, hidden_channels, num_items, temperature) if use_gate else None
        self.generator = AttributeScalingResidualGenerator(channels, hidden_channels)

    def forward(self, features: torch.Tensor, gate_override: torch.Tensor | None = None) -> RAAOutput:
        """Amplify ``features``.

        Args:
            features (torch.Tensor): Teacher features ``F`` (N, C, H, W).
            gate_override (torch.Tensor | None): Gate to use instead of the predicted one, (N, 1, H, W).
                Stage 1 passes the ground-truth synthetic mask here. Defaults to ``None``.
        """
        scale = self.generator(features)
        gate = self.gate(features) if self.gate is not None else None
        applied = gate_override if gate_override is not None else gate
        amplified = features * (1 + scale) if applied is None else features * (1 + applied * scale)
        return RAAOutput(amplified=amplified, gate=gate, scale=scale)
