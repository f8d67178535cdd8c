# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Models of the plugin. Importing this module registers them with anomalib's CLI and ``get_model``.

Example:
    >>> from anomalib.models import get_model
    >>> import anomalib_kd_ext.models  # noqa: F401  (done automatically after pip install)
    >>> get_model("AAND", backbone="resnet18", pre_trained=False).__class__.__name__
    'AAND'
"""

from .aand import AAND
from .dskd import DSKD

__all__ = ["AAND", "DSKD"]
