# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Optimiser arguments shared by the KD models."""

from collections.abc import Sequence

from .validation import check_range


def adam_betas(betas: Sequence[float]) -> tuple[float, float]:
    """Check and return Adam's ``(beta1, beta2)``.

    Raises:
        ValueError: If ``betas`` does not hold exactly two values in [0, 1).
    """
    if len(betas) != 2:
        msg = f"betas must hold two values (beta1, beta2), got {list(betas)}."
        raise ValueError(msg)
    for beta in betas:
        check_range("each of betas", beta, low=0, high=1, high_open=True)
    return float(betas[0]), float(betas[1])
