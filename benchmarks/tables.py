# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Result files of every benchmark task, written one way: CSV (atomically) and JSON, no heavy imports."""

import csv
import json
from pathlib import Path


def write_csv(rows: list[dict], path: Path, columns: list[str] | None = None) -> None:
    """Write ``rows`` to ``path`` atomically (a crash never leaves half a file).

    ``columns`` defaults to the union of the rows' keys, in first-seen order; keys outside ``columns`` are an error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def save_rows(rows: list[dict], out: Path, stem: str, columns: list[str] | None = None) -> None:
    """Write ``rows`` to ``out/stem.csv`` (see :func:`write_csv`) and ``out/stem.json``."""
    write_csv(rows, out / f"{stem}.csv", columns)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
