# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DSKD loss against values computed by hand."""

import math

import pytest
import torch

from anomalib_kd_ext.models.dskd.loss import DualStudentLoss
from anomalib_kd_ext.models.dskd.torch_model import DSKDFeatures


def _cos(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors, in plain Python."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_loss_by_hand() -> None:
    """The encoder, decoder and weighted total losses equal those computed by hand."""
    # One level, batch 1, C=2, two positions.
    teacher = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # vectors (1, 0) and (0, 1)
    encoder = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]]])  # (1, 1) and (1, 1)
    decoder = torch.tensor([[[[-1.0, 0.0]], [[0.0, 2.0]]]])  # (-1, 0) and (0, 2)
    t = [[1.0, 0.0], [0.0, 1.0]]
    e = [[1.0, 1.0], [1.0, 1.0]]
    d = [[-1.0, 0.0], [0.0, 2.0]]
    encoder_loss = sum(1 - _cos(a, b) for a, b in zip(t, e, strict=True)) / 2
    decoder_loss = sum(1 - _cos(a, b) for a, b in zip(t, d, strict=True)) / 2
    features = DSKDFeatures(teacher=[teacher], encoder_student=[encoder], decoder_student=[decoder])
    losses = DualStudentLoss(student_weights=(1.0, 0.5))(features)
    assert float(losses["encoder_loss"]) == pytest.approx(encoder_loss, rel=1e-6)
    assert float(losses["decoder_loss"]) == pytest.approx(decoder_loss, rel=1e-6)
    assert float(losses["loss"]) == pytest.approx(encoder_loss + 0.5 * decoder_loss, rel=1e-6)


def test_switched_off_student_contributes_nothing() -> None:
    """Without a decoder student the decoder loss is zero and the total equals the encoder loss."""
    teacher = [torch.rand(2, 4, 3, 3)]
    features = DSKDFeatures(teacher=teacher, encoder_student=[torch.rand(2, 4, 3, 3)], decoder_student=None)
    losses = DualStudentLoss()(features)
    assert float(losses["decoder_loss"]) == 0.0
    assert float(losses["loss"]) == pytest.approx(float(losses["encoder_loss"]))


def test_invalid_weights() -> None:
    """Student weights of the wrong length or with a negative value raise ValueError."""
    with pytest.raises(ValueError, match="student_weights"):
        DualStudentLoss(student_weights=(1.0,))
    with pytest.raises(ValueError, match="student_weights"):
        DualStudentLoss(student_weights=(1.0, -1.0))
