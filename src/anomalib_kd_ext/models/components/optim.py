# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Optimiser arguments shared by the KD models."""

from collections.abc import Sequence


def adam_betas(betas: Sequence[float]) -> tuple[float, float]:
    """Check and return Adam's ``(beta1, beta2)``.

    Raises:
        ValueError: If ``betas`` does not hold exactly two values.
    """
    if len(betas) != 2:
        msg = f"betas must hold two values (beta1, beta2), got {list(betas)}."
        raise ValueError(msg)
    return float(betas[0]), float(betas[1])
