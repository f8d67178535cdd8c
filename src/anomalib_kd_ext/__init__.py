# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Knowledge-distillation anomaly detection models for anomalib.

The package adds two models to anomalib:

- :class:`AAND`: Anomaly Amplification and Normality Distillation (Tang et al., arXiv 2405.02068).
- :class:`DSKD`: Dual-Student Knowledge Distillation (Yao and Gao, arXiv 2402.00448).

Importing this package is cheap: the models (and anomalib with them) are imported on first
attribute access. After ``pip install`` the stock ``anomalib`` command resolves the short model
names through a lazy import hook (see :mod:`anomalib_kd_ext._autoload`).

Example:
    >>> from anomalib_kd_ext import AAND
    >>> model = AAND(backbone="resnet18", pre_trained=False)
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["AAND", "DSKD"]

if TYPE_CHECKING:
    from anomalib_kd_ext.models import AAND, DSKD


def __getattr__(name: str) -> object:
    """Import the models lazily so that importing the package stays cheap."""
    if name in __all__:
        from anomalib_kd_ext import models

        return getattr(models, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
