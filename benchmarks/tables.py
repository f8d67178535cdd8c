# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Result files of every benchmark task, written one way: CSV (atomically, the compare command's writer) and JSON."""

import json
from pathlib import Path

from anomalib_kd_ext.compare.report import write_csv

__all__ = ["save_rows", "write_csv"]


def save_rows(rows: list[dict], out: Path, stem: str, columns: list[str] | None = None) -> None:
    """Write ``rows`` to ``out/stem.csv`` (see :func:`write_csv`) and ``out/stem.json``."""
    write_csv(rows, out / f"{stem}.csv", columns)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
