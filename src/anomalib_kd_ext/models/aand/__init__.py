# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND: Anomaly Amplification and Normality Distillation (arXiv 2405.02068).

Example:
    >>> from anomalib_kd_ext.models.aand import AAND
    >>> model = AAND(backbone="resnet18", pre_trained=False)
"""

from .lightning_model import AAND
from .torch_model import AANDModel

__all__ = ["AAND", "AANDModel"]
