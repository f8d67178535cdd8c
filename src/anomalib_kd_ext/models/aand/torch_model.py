# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""PyTorch model of AAND: frozen teacher, RAA modules, reverse-distillation student.

One frozen teacher pass gives the vanilla features ``F`` of every level; each RAA module turns its
level into ``F_adv = F * (1 + w * s)``. The residual only reaches the student and the anomaly map:
the next teacher stage always consumes the vanilla feature, which a feature extractor gives for free.

- :meth:`AANDModel.amplification_forward` (stage 1): ``F``, ``F_adv`` computed with the ground-truth
  gate, and the predicted gates.
- :meth:`AANDModel.forward`: in training mode (stage 2) ``F_adv`` with the predicted gate and the
  student's reconstruction; in eval mode an :class:`~anomalib.data.InferenceBatch` with the
  anomaly map and score.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.aand.torch_model import AANDModel
    >>> model = AANDModel(backbone="resnet18", pre_trained=False).eval()
    >>> output = model(torch.rand(1, 3, 256, 256))
    >>> output.anomaly_map.shape, output.pred_score.shape
    (torch.Size([1, 1, 256, 256]), torch.Size([1, 1]))
"""

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from anomalib.data import InferenceBatch
from torch import nn
from torch.nn import functional as F  # noqa: N812

if TYPE_CHECKING:
    from anomalib.data.utils.tiler import Tiler

from anomalib_kd_ext.models.components import (
    CosineAnomalyMap,
    Teacher,
    anomaly_score,
    build_reverse_student,
    check_input_size,
    required_input_multiple,
)

from .raa import ResidualAnomalyAmplification


def downsample_mask(mask: torch.Tensor, size: Sequence[int], threshold: float = 0.3) -> torch.Tensor:
    """Average-pool a (N, 1, H, W) mask to ``size`` and binarise it at ``threshold`` (as the AAND code)."""
    return F.adaptive_avg_pool2d(mask.float(), tuple(size)) > threshold


class AmplificationOutput(NamedTuple):
    """What stage 1 needs for its losses."""

    features: list[torch.Tensor]  # F per level
    amplified: list[torch.Tensor]  # F_adv per level, with the ground-truth gate
    gates: list[torch.Tensor]  # predicted gate w per level, (N, 1, h, w)
    masks: list[torch.Tensor]  # ground-truth masks per level, boolean (N, 1, h, w)
    foreground: list[torch.Tensor] | None = None  # foreground masks per level, boolean (N, 1, h, w), when given


class AANDModel(nn.Module):
    """AAND: Anomaly Amplification and Normality Distillation.

    Args:
        backbone (str): timm teacher name (weights tag allowed). Defaults to ``"wide_resnet50_2.tv_in1k"``.
        layers (Sequence[str]): Teacher levels. Defaults to ``("layer1", "layer2", "layer3")``.
        pre_trained (bool): Pre-trained teacher weights. Defaults to ``True``.
        backbone_weights (str | Path | None): Local teacher weights file. Defaults to ``None``.
        use_raa (bool): With ``False`` there are no RAA modules: plain reverse distillation. Defaults to ``True``.
        use_gate (bool): With ``False`` the RAA residual is ungated. Defaults to ``True``.
        num_memory_items (int): Prototypes per bank ``L``. Defaults to ``50``.
        gate_temperature (float): Softmax temperature of the gate. Defaults to ``0.2``.
        mask_threshold (float): Binarisation threshold of pooled masks. Defaults to ``0.3``.
        anomaly_map_mode (Literal["add", "multiply"]): Fusion of the levels. Defaults to ``"add"``.
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        use_raa: bool = True,
        use_gate: bool = True,
        num_memory_items: int = 50,
        gate_temperature: float = 0.2,
        mask_threshold: float = 0.3,
        anomaly_map_mode: Literal["add", "multiply"] = "add",
    ) -> None:
        super().__init__()
        self.teacher = Teacher(backbone, layers, pre_trained=pre_trained, backbone_weights=backbone_weights)
        channels, strides = self.teacher.channels, self.teacher.strides
        self.raa = (
            nn.ModuleList(
                ResidualAnomalyAmplification(c, num_memory_items, gate_temperature, use_gate) for c in channels
            )
            if use_raa
            else None
        )
        self.use_gate = use_gate
        self.student = build_reverse_student(backbone, layers, channels, strides)
        self.anomaly_map = CosineAnomalyMap(mode=anomaly_map_mode)
        self.mask_threshold = mask_threshold
        self.input_multiple = required_input_multiple(strides)
        self.tiler: Tiler | None = None  # set by anomalib's TilerConfigurationCallback for high-resolution images

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a clear error for sizes the bottleneck and decoder cannot reproduce."""
        check_input_size(height, width, self.input_multiple, what="the bottleneck and decoder")

    def amplify(
        self,
        features: Sequence[torch.Tensor],
        gate_masks: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Apply RAA per level; returns ``F_adv`` and the predicted gates (``F`` itself when RAA is off)."""
        if self.raa is None:
            return list(features), [None] * len(features)
        amplified, gates = [], []
        for index, (raa, feature) in enumerate(zip(self.raa, features, strict=True)):
            override = gate_masks[index].to(feature.dtype) if gate_masks is not None and self.use_gate else None
            output = raa(feature, gate_override=override)
            amplified.append(output.amplified)
            gates.append(output.gate)
        return amplified, gates

    def amplification_forward(
        self,
        images: torch.Tensor,
        anomaly_masks: torch.Tensor,
        foreground: torch.Tensor | None = None,
    ) -> AmplificationOutput:
        """Stage 1: teacher features, features amplified with the ground-truth gate, predicted gates.

        Args:
            images (torch.Tensor): Images with synthetic anomalies, (N, 3, H, W), normalised.
            anomaly_masks (torch.Tensor): Their anomaly masks, (N, 1, H, W).
            foreground (torch.Tensor | None): Their foreground masks, (N, 1, H, W), brought to each level as the
                anomaly masks are. Defaults to ``None``.
        """
        if self.raa is None:
            msg = "Stage 1 needs the RAA modules, but this model was built with use_raa=False."
            raise RuntimeError(msg)
        if self.tiler is not None:
            images, anomaly_masks = self.tiler.tile(images), self.tiler.tile(anomaly_masks)
            foreground = self.tiler.tile(foreground) if foreground is not None else None
        features = self.teacher(images)
        masks = [downsample_mask(anomaly_masks, f.shape[-2:], self.mask_threshold) for f in features]
        amplified, gates = self.amplify(features, masks)
        levels = None
        if foreground is not None:
            levels = [downsample_mask(foreground, f.shape[-2:], self.mask_threshold) for f in features]
        return AmplificationOutput(features=features, amplified=amplified, gates=gates, masks=masks, foreground=levels)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]] | InferenceBatch:
        """Stage 2 and inference.

        Returns:
            In training mode, ``(F_adv, S)``: the amplified teacher features (no gradient: teacher and
            RAA are frozen in stage 2) and the student's reconstruction. In eval mode, an
            ``InferenceBatch`` with ``anomaly_map`` (N, 1, H, W) and ``pred_score`` (N, 1).
        """
        size = images.shape[-2:]
        if self.tiler is not None:
            images = self.tiler.tile(images)
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_input_size(images.shape[-2], images.shape[-1])
        with torch.no_grad() if self.training else contextlib.nullcontext():
            amplified, _ = self.amplify(self.teacher(images))
        reconstructed = self.student(amplified)
        if self.training:
            return amplified, reconstructed
        if self.tiler is not None:  # stitch the tiles' features together, then one map at the full size
            amplified = [self.tiler.untile(feature) for feature in amplified]
            reconstructed = [self.tiler.untile(feature) for feature in reconstructed]
        anomaly_map = self.anomaly_map(amplified, reconstructed, size)
        return InferenceBatch(pred_score=anomaly_score(anomaly_map), anomaly_map=anomaly_map)
