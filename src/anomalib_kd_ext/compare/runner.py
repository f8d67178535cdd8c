# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Run the cells of a comparison one child process each, resumable, with progress per model and epoch.

Each cell runs in ``python -m anomalib_kd_ext.compare.cells`` (so the peak memory column is that cell's, and one
crashing cell does not end the run); its output goes to ``<logs>/<cell>.log``. A finished cell is a row of the
CSV, written atomically after each cell; a rerun with the same CSV skips the cells already there (an interrupted
cell starts again from scratch).
"""

import json
import os
import subprocess  # nosec B404  # runs this interpreter on this package's module
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anomalib_kd_ext.compare.report import read_rows, write_csv
from anomalib_kd_ext.compare.spec import COLUMNS, KEY, PROGRESS, Cell


def run_cells(
    cells: list[Cell],
    csv_path: Path,
    logs: Path,
    after_row: Callable[[list[dict[str, Any]]], object] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the cells whose rows are not in ``csv_path`` yet; return all rows and the labels of failed cells.

    ``after_row`` is called with all rows after each finished cell (to rewrite tables and pictures).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    rows = read_rows(csv_path)
    done = {tuple(row.get(key) for key in KEY) for row in rows}
    failed = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        overall = bar.add_task("models", total=len(cells))
        for cell in cells:
            if cell.key() in done:
                bar.console.print(f"{cell.label}: in {csv_path}, skipped")
                bar.advance(overall)
                continue
            task = bar.add_task(cell.label, total=None)

            def show(values: dict[str, Any], task: Any = task, label: str = cell.label) -> None:  # noqa: ANN401
                if values.get("phase") == "train":
                    stage = f" ({values['stage']})" if values.get("stage") else ""
                    description = f"{label}: epoch {values['epoch']}/{values['epochs']}{stage}"
                    bar.update(task, total=values["epochs"], completed=values["epoch"], description=description)
                else:
                    bar.update(task, description=f"{label}: {values.get('phase')}")

            row = run_child(cell, logs, show)
            bar.remove_task(task)
            if row is None:
                failed.append(cell.label)
                bar.console.print(f"[red]{cell.label}: failed, see {logs}[/red]")
            else:
                rows.append(row)
                write_csv(rows, csv_path, COLUMNS)
                if after_row is not None:
                    after_row(rows)
                bar.console.print(f"{cell.label}: {summary(row)}")
            bar.advance(overall)
    return rows, failed


def summary(row: dict[str, Any]) -> str:
    """One line of a finished cell's numbers."""
    names = ("image_AUROC", "pixel_AUROC", "recall_at_false_alarm", "good_flagged")
    parts = [f"{name} {row[name]:.3f}" for name in names if row.get(name) is not None]
    return ", ".join([*parts, f"{row['train_seconds']:.0f} s training"])


def cell_name(cell: Cell) -> str:
    """A file name for ``cell`` (its logs)."""
    spec = f"{cell.dataset.kind}_{cell.dataset.category}".replace(":", "_").replace("=", "_").replace("/", "_")
    return f"{cell.model}_{spec}_seed{cell.seed}"


def run_child(cell: Cell, logs: Path, show: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Run ``cell`` in a child process (output in ``logs``); its row, or ``None`` when it failed.

    The child's progress lines go to ``show``; every line goes to the log.
    """
    logs.mkdir(parents=True, exist_ok=True)
    name = cell_name(cell)
    cell_file, result = logs / f"{name}.cell.json", logs / f"{name}.result.json"
    cell_file.write_text(cell.to_json(), encoding="utf-8")
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "anomalib_kd_ext.compare.cells", str(cell_file), str(result)]
    with (logs / f"{name}.log").open("w", encoding="utf-8") as log:
        child = subprocess.Popen(  # noqa: S603  # nosec B603  # this interpreter, this package's module
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
        )
        assert child.stdout is not None  # nosec B101  # stdout=PIPE
        for line in child.stdout:
            log.write(line)
            if line.startswith(PROGRESS):
                show(json.loads(line[len(PROGRESS) :]))
        code = child.wait()
    if code != 0 or not result.is_file():
        return None
    return json.loads(result.read_text(encoding="utf-8"))
