# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DSKD: Dual-Student Knowledge Distillation (arXiv 2402.00448).

Example:
    >>> from anomalib_kd_ext.models.dskd import DSKD
    >>> model = DSKD(backbone="resnet18", pre_trained=False)
"""

from .lightning_model import DSKD
from .torch_model import DSKDModel

__all__ = ["DSKD", "DSKDModel"]
