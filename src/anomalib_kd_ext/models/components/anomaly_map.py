# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Anomaly map from teacher-student feature discrepancies.

Per level, the discrepancy at each position is the cosine distance ``1 - cos(T, S)`` along channels.
The per-level maps are upsampled bilinearly (``align_corners=True``) to the input size, combined by
sum or product, and smoothed with anomalib's :class:`~anomalib.models.components.GaussianBlur2d`
(sigma 4, which exports to ONNX). The image score is the maximum of the map.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.components import CosineAnomalyMap
    >>> generator = CosineAnomalyMap(mode="add")
    >>> t = [torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8)]
    >>> s = [torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8)]
    >>> generator(t, s, image_size=(64, 64)).shape
    torch.Size([2, 1, 64, 64])
"""

from collections.abc import Sequence
from typing import Literal

import torch
from anomalib.models.components import GaussianBlur2d
from kornia.filters import get_gaussian_kernel1d
from torch import nn
from torch.nn import functional as F  # noqa: N812

EPS = 1e-8


def cosine_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Return ``1 - cos`` along channels, (N, C, H, W) x2 -> (N, 1, H, W); zero vectors give 1, never NaN."""
    return 1 - F.cosine_similarity(teacher, student, dim=1, eps=EPS).unsqueeze(1)


BORDER = "reflect"  # border of the blur (anomalib's default)


class CosineAnomalyMap(nn.Module):
    """Fuse per-level cosine distances into a smoothed anomaly map.

    Args:
        mode (Literal["add", "multiply"]): How levels (and students) are combined. Defaults to ``"add"``.
        sigma (float): Standard deviation of the Gaussian blur. Defaults to ``4``.
        separable_blur (bool): Apply the Gaussian of anomalib's ``GaussianBlur2d`` as a row pass and a column pass
            of kornia's 1-D kernel (the 2-D kernel, normalised, is their outer product), with the same reflected
            border: the same map up to float rounding, 2x33 instead of 33x33 multiply-adds per pixel at sigma 4.
            ``False`` calls ``GaussianBlur2d`` itself. Defaults to ``True``.
    """

    def __init__(
        self,
        mode: Literal["add", "multiply"] = "add",
        sigma: float = 4.0,
        separable_blur: bool = True,
    ) -> None:
        super().__init__()
        if mode not in {"add", "multiply"}:
            msg = f"Anomaly map mode must be 'add' or 'multiply', got {mode!r}."
            raise ValueError(msg)
        self.mode = mode
        kernel_size = 2 * int(4.0 * sigma + 0.5) + 1
        self.blur = GaussianBlur2d(
            sigma=(sigma, sigma),
            channels=1,
            kernel_size=(kernel_size, kernel_size),
            border_type=BORDER,
        )
        self.separable_blur = separable_blur
        taps = get_gaussian_kernel1d(kernel_size, sigma).flatten()  # normalised, as each factor of the 2-D kernel
        self.register_buffer("blur_columns", taps.view(1, 1, -1, 1), persistent=False)
        self.register_buffer("blur_rows", taps.view(1, 1, 1, -1), persistent=False)
        self.blur_padding = (kernel_size // 2,) * 4  # "same" output size for an odd kernel

    def smooth(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Gaussian blur of an (N, 1, H, W) map with anomalib's kernel, padding and border mode."""
        if not self.separable_blur:
            return self.blur(anomaly_map)
        padded = F.pad(anomaly_map, self.blur_padding, mode=BORDER)
        return F.conv2d(F.conv2d(padded, self.blur_rows), self.blur_columns)

    def forward(
        self,
        teacher_features: Sequence[torch.Tensor],
        student_features: Sequence[torch.Tensor],
        image_size: tuple[int, int] | torch.Size,
    ) -> torch.Tensor:
        """Return the anomaly map (N, 1, H, W) at ``image_size`` for paired feature lists."""
        anomaly_map: torch.Tensor | None = None
        for teacher, student in zip(teacher_features, student_features, strict=True):
            distance = cosine_distance(teacher, student)
            distance = F.interpolate(distance, size=tuple(image_size), mode="bilinear", align_corners=True)
            if anomaly_map is None:
                anomaly_map = distance
            elif self.mode == "add":
                anomaly_map = anomaly_map + distance
            else:
                anomaly_map = anomaly_map * distance
        if anomaly_map is None:
            msg = "No feature levels to compare."
            raise ValueError(msg)
        return self.smooth(anomaly_map)


def anomaly_score(anomaly_map: torch.Tensor) -> torch.Tensor:
    """Image score: the maximum of each map, (N, 1, H, W) -> (N, 1) as in anomalib's own KD models."""
    return torch.amax(anomaly_map, dim=(-2, -1))
