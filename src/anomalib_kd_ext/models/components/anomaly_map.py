# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Anomaly map from teacher-student feature discrepancies.

Per level, the discrepancy at each position is the cosine distance ``1 - cos(T, S)`` along channels.
The per-level maps are upsampled bilinearly (``align_corners=True``) to the input size, combined by
sum or product, and smoothed with anomalib's :class:`~anomalib.models.components.GaussianBlur2d`
(sigma 4, which exports to ONNX). The image score is the maximum of the map.

Bilinear upsampling, the sum over levels and the blur are all linear maps, so in ``add`` mode the whole tail is
computed as ``sum_l (B_h A_l) D_l (B_w A_l')^T`` with one small constant matrix per side and level (``A``: the
upsampling, ``B``: the blur with its reflected border): the same map up to float rounding, without a full-resolution
interpolation or convolution. At 256 px with a Lite0 teacher this takes the tail from about 2.4 ms to 0.2 ms in
OpenVINO FP32 on a 2-core CPU, where its Interpolate nodes were the largest FP32 cost left in an INT8 model
(``python -m benchmarks deploy``).

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
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
from anomalib.models.components import GaussianBlur2d
from kornia.filters import get_gaussian_kernel1d
from torch import nn
from torch.amp import is_autocast_available
from torch.nn import functional as F  # noqa: N812

EPS = 1e-8  # of the cosine similarities of every KD loss and map (F.normalize / F.cosine_similarity)


def cosine_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Return ``1 - cos`` along channels, (N, C, H, W) x2 -> (N, 1, H, W); zero vectors give 1, never NaN.

    Computed in float32 (``EPS`` is 0 in half precision).
    """
    return 1 - F.cosine_similarity(teacher.float(), student.float(), dim=1, eps=EPS).unsqueeze(1)


BORDER = "reflect"  # border of the blur (anomalib's default)


def reflect_blur_matrix(size: int, taps: torch.Tensor) -> torch.Tensor:
    """(size, size) matrix of a 1-D blur with odd ``taps`` and a reflected border: ``x @ matrix`` blurs x's last axis.

    Row ``i`` is the blurred unit vector ``e_i``, so the matrix comes out of ``conv1d`` already in the orientation
    a right-multiplication needs (see :meth:`CosineAnomalyMap.blur_matrix_t`).
    """
    basis = torch.eye(size, dtype=taps.dtype, device=taps.device).unsqueeze(1)
    radius = taps.numel() // 2
    padded = F.pad(basis, (radius, radius), mode=BORDER)
    return F.conv1d(padded, taps.view(1, 1, -1)).squeeze(1)


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``False`` for devices without autocast, e.g. ``meta``)."""
    return is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def autocast_off(device_type: str) -> AbstractContextManager:
    """A context that switches autocast off for ``device_type`` where it is on (a no-op elsewhere)."""
    return torch.autocast(device_type, enabled=False) if autocast_enabled(device_type) else nullcontext()


class CosineAnomalyMap(nn.Module):
    """Fuse per-level cosine distances into a smoothed anomaly map.

    Args:
        mode (Literal["add", "multiply"]): How levels (and students) are combined. Defaults to ``"add"``.
        sigma (float): Standard deviation of the Gaussian blur. Defaults to ``4``.
        separable_blur (bool): Apply the Gaussian of anomalib's ``GaussianBlur2d`` as a row pass and a column pass
            of kornia's 1-D kernel (the 2-D kernel, normalised, is their outer product), with the same reflected
            border: the same map up to float rounding, 2x33 instead of 33x33 multiply-adds per pixel at sigma 4.
            ``False`` calls ``GaussianBlur2d`` itself. Defaults to ``True``.
        matrix_tail (bool): In ``add`` mode, upsample, sum and blur as two matrix products per level (see the
            module docstring; same map up to float rounding). ``multiply`` mode upsamples with matrix products and
            blurs with :meth:`smooth`. ``False``: ``F.interpolate`` per level, then :meth:`smooth`. Defaults to
            ``True``.

    The map is computed in float32 with autocast off, whatever the precision of the features (fp16 / bf16 under
    mixed or half precision): scores, ties, AUROC and thresholds do not depend on the training precision.
    """

    def __init__(
        self,
        mode: Literal["add", "multiply"] = "add",
        sigma: float = 4.0,
        separable_blur: bool = True,
        matrix_tail: bool = True,
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
        self.matrix_tail = matrix_tail

    @staticmethod
    def upsampling_matrix_t(length: int, size: int, like: torch.Tensor) -> torch.Tensor:
        """(length, size) transpose of 1-D linear interpolation with ``align_corners=True`` (one axis of bilinear)."""
        basis = torch.eye(length, dtype=like.dtype, device=like.device).unsqueeze(1)
        return F.interpolate(basis, size=size, mode="linear", align_corners=True).squeeze(1)

    def blur_matrix_t(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """(size, size) transpose of the 1-D Gaussian of :meth:`smooth` along one axis, reflected border included.

        The matrices are built transposed and used as they come out of ``interpolate`` / ``conv1d``: OpenVINO 2025
        computed a wrong map when an in-graph transpose of the conv-built blur matrix fed a MatMul (dynamic-shape
        ONNX export, see ``docs/deployment.md``).
        """
        return reflect_blur_matrix(size, self.blur_rows.to(like.dtype).flatten())

    def smooth(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Gaussian blur of an (N, 1, H, W) map with anomalib's kernel, padding and border mode."""
        if not self.separable_blur:
            return self.blur(anomaly_map)
        padded = F.pad(anomaly_map, self.blur_padding, mode=BORDER)
        rows, columns = self.blur_rows.to(anomaly_map.dtype), self.blur_columns.to(anomaly_map.dtype)
        return F.conv2d(F.conv2d(padded, rows), columns)

    def forward(
        self,
        teacher_features: Sequence[torch.Tensor],
        student_features: Sequence[torch.Tensor],
        image_size: tuple[int, int] | torch.Size,
    ) -> torch.Tensor:
        """Return the anomaly map (N, 1, H, W) at ``image_size`` for paired feature lists."""
        pairs = list(zip(teacher_features, student_features, strict=True))
        if not pairs:
            msg = "No feature levels to compare."
            raise ValueError(msg)
        height, width = (int(side) for side in image_size)
        with autocast_off(pairs[0][0].device.type):
            distances = [cosine_distance(teacher, student) for teacher, student in pairs]  # float32
            return self._map(distances, height, width)

    def _map(self, distances: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        if not self.matrix_tail:
            upsampled = [
                F.interpolate(distance, size=(height, width), mode="bilinear", align_corners=True)
                for distance in distances
            ]
            return self.smooth(self._fuse(upsampled))
        fold_blur = self.mode == "add"  # the blur commutes with a sum of maps, not with a product
        if fold_blur:
            blur_h, blur_w = self.blur_matrix_t(height, distances[0]), self.blur_matrix_t(width, distances[0])
        upsampled = []
        for distance in distances:
            left_t = self.upsampling_matrix_t(distance.shape[-2], height, distance)  # (h, H)
            right_t = self.upsampling_matrix_t(distance.shape[-1], width, distance)  # (w, W)
            if fold_blur:
                left_t, right_t = left_t @ blur_h, right_t @ blur_w
            upsampled.append(left_t.transpose(0, 1) @ distance @ right_t)
        anomaly_map = self._fuse(upsampled)
        return anomaly_map if fold_blur else self.smooth(anomaly_map)

    def _fuse(self, maps: list[torch.Tensor]) -> torch.Tensor:
        fused = maps[0]
        for level in maps[1:]:
            fused = fused + level if self.mode == "add" else fused * level
        return fused


def anomaly_score(anomaly_map: torch.Tensor) -> torch.Tensor:
    """Image score: the maximum of each map, (N, 1, H, W) -> (N, 1) as in anomalib's own KD models."""
    return torch.amax(anomaly_map, dim=(-2, -1))
