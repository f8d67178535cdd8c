# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Pyramid matching loss of DSKD.

For each student and level, the mean over the batch and positions of ``1 - cos(T, S)`` along
channels; summed over levels; the two students weighted by ``student_weights`` (equal by default).

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.dskd.loss import pyramid_matching_loss
    >>> t = [torch.rand(2, 8, 4, 4)]
    >>> float(pyramid_matching_loss(t, t)) < 1e-6
    True
"""

from collections.abc import Sequence

import torch
from torch import nn

from anomalib_kd_ext.models.components import cosine_distance

from .torch_model import DSKDFeatures


def pyramid_matching_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over levels of the mean cosine distance between teacher and student features."""
    total = teacher[0].new_zeros((), dtype=torch.float32)
    for teacher_level, student_level in zip(teacher, student, strict=True):
        total = total + cosine_distance(teacher_level, student_level).mean()
    return total


class DualStudentLoss(nn.Module):
    """Weighted sum of the pyramid matching losses of the encoder student Se and the decoder student Sd.

    Args:
        student_weights (Sequence[float]): Weights of (Se, Sd). Defaults to ``(1.0, 1.0)``.
    """

    def __init__(self, student_weights: Sequence[float] = (1.0, 1.0)) -> None:
        super().__init__()
        if len(student_weights) != 2 or any(w < 0 for w in student_weights):
            msg = f"student_weights must be two non-negative numbers (Se, Sd), got {list(student_weights)}."
            raise ValueError(msg)
        self.student_weights = tuple(float(w) for w in student_weights)

    def forward(self, features: DSKDFeatures) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "encoder_loss", "decoder_loss"}`` (a switched-off student contributes 0)."""
        zero = features.teacher[0].new_zeros((), dtype=torch.float32)
        encoder = (
            pyramid_matching_loss(features.teacher, features.encoder_student)
            if features.encoder_student is not None
            else zero
        )
        decoder = (
            pyramid_matching_loss(features.teacher, features.decoder_student)
            if features.decoder_student is not None
            else zero
        )
        loss = self.student_weights[0] * encoder + self.student_weights[1] * decoder
        return {"loss": loss, "encoder_loss": encoder, "decoder_loss": decoder}
