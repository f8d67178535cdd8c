# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Datamodules and data tools of the plugin."""

from anomalib_kd_ext.data.cache import CachedDataset, ImageCache
from anomalib_kd_ext.data.elpv import ELPV

__all__ = ["ELPV", "CachedDataset", "ImageCache"]
