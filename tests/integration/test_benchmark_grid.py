# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Smoke test of the benchmark harness (benchmarks/grid.py): one cell on the generated tiny dataset, then resume."""

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

GRID = Path(__file__).parents[2] / "benchmarks" / "grid.py"


def load_grid():
    spec = importlib.util.spec_from_file_location("grid", GRID)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_grid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GRID), *args], capture_output=True, text=True, check=False)


@pytest.mark.usefixtures("lite0_weights")
def test_one_cell_grid_writes_schema_and_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    """A 1-cell grid writes a CSV with the documented columns, a table and a chart; a rerun redoes nothing."""
    grid = load_grid()
    out = tmp_path / "out"
    args = [
        "--models", "DSKD", "--datasets", "mvtec:tiny", "--seeds", "0", "--epochs", "1", "--image-size", "64",
        "--batch-size", "4", "--num-workers", "0", "--mvtec-root", str(tiny_dataset),
        "--work-dir", str(tmp_path / "work"), "--out", str(out),
    ]  # fmt: skip
    first = run_grid(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    with (out / "grid.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == grid.COLUMNS
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["dataset"], row["category"], row["seed"]) == ("DSKD", "mvtec", "tiny", "0")
    for metric in grid.METRICS:
        assert 0.0 <= float(row[metric]) <= 1.0, (metric, row[metric])
    assert float(row["train_seconds"]) > 0
    assert float(row["peak_memory_MB"]) > 100
    assert "| mvtec/tiny | DSKD | 1 |" in (out / "grid.md").read_text()
    assert (out / "grid.png").stat().st_size > 1000
    with (out / "curves" / "DSKD_mvtec_tiny_0.csv").open(newline="") as handle:
        curves = list(csv.DictReader(handle))
    assert any(entry["train_encoder_loss"] and float(entry["train_decoder_loss"]) > 0 for entry in curves)
    csv_before = (out / "grid.csv").read_text()
    log = next((out / "logs").glob("*.log"))
    log_time = log.stat().st_mtime_ns

    second = run_grid(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skipped" in second.stdout
    assert (out / "grid.csv").read_text() == csv_before
    assert log.stat().st_mtime_ns == log_time  # no child process ran again


def test_grid_rejects_unknown_dataset(tmp_path: Path) -> None:
    """An unknown dataset spec is refused before anything runs, with the accepted forms."""
    result = run_grid("--datasets", "mvtec", "--out", str(tmp_path))
    assert result.returncode != 0
    assert "unknown dataset 'mvtec'" in result.stderr
    assert "mvtec:<category>" in result.stderr
    assert not any(tmp_path.iterdir())


def test_mean_std() -> None:
    grid = load_grid()
    assert grid.mean_std([0.9, 1.0]) == "0.950 ± 0.071"
    assert grid.mean_std([0.5]) == "0.500"
    assert grid.mean_std([None, float("nan")]) == "–"
