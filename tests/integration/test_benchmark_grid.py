# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Smoke test of the benchmark CLI (``python -m benchmarks grid``).

One cell on the generated tiny dataset, then resume.
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from benchmarks import grid
from benchmarks.__main__ import TASKS
from helpers import run_mains, run_offline

REPO = Path(__file__).parents[2]


def run_benchmark(task: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m benchmarks <task>`` from the repository root; output captured, no exception on failure."""
    return run_offline([sys.executable, "-m", "benchmarks", task, *args], REPO)


def run_grid(*args: str) -> subprocess.CompletedProcess:
    """Run the ``grid`` task with ``args``."""
    return run_benchmark("grid", *args)


@pytest.mark.usefixtures("lite0_weights")
def test_one_cell_grid_writes_schema_and_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    """A 1-cell grid writes a CSV with the documented columns, a table and a chart; a rerun redoes nothing."""
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
    # The row's image AUROC is that of the cell's own per-image predictions (scored as an export scores).
    with (tmp_path / "work" / "DSKD_mvtec_tiny_seed0" / "predictions.csv").open(newline="") as handle:
        images = list(csv.DictReader(handle))
    assert len(images) == 6
    labels, scores = [int(image["label"]) for image in images], [float(image["pred_score"]) for image in images]
    assert float(row["image_AUROC"]) == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    assert all(row[metric] for metric in grid.METRICS)
    assert float(row["train_seconds"]) > 0
    assert float(row["peak_memory_MB"]) > 100
    assert "| mvtec/tiny | DSKD | 1 |" in (out / "grid.md").read_text()
    assert (out / "grid.png").stat().st_size > 1000
    with (out / "curves" / "DSKD_mvtec_tiny_seed0_e1.csv").open(newline="") as handle:
        curves = list(csv.DictReader(handle))
    assert any(entry["train_encoder_loss"] and float(entry["train_decoder_loss"]) > 0 for entry in curves)
    assert "| mvtec/tiny | DSKD | 1 | " in (out / "grid.md").read_text().split("Learning curves")[1]
    csv_before = (out / "grid.csv").read_text()
    log = next((out / "logs").glob("*.log"))
    log_time = log.stat().st_mtime_ns

    second = run_grid(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skipped" in second.stdout
    assert (out / "grid.csv").read_text() == csv_before
    assert log.stat().st_mtime_ns == log_time  # no child process ran again

    # The per-student diagnostic re-scores the cell's trained DSKD: its fused column is the grid's number.
    branches_out = tmp_path / "branches"
    branches = run_benchmark("dskd-branches", *args[: args.index("--out")], "--out", str(branches_out))
    assert branches.returncode == 0, branches.stdout + branches.stderr
    with (branches_out / "dskd_branches.csv").open(newline="") as handle:
        (scores,) = list(csv.DictReader(handle))
    assert float(scores["fused image_AUROC"]) == pytest.approx(float(row["image_AUROC"]), abs=1e-4)
    for branch in ("Se only", "Sd only"):
        assert 0.0 <= float(scores[f"{branch} pixel_AUROC"]) <= 1.0


def test_grid_rejects_unknown_dataset(tmp_path: Path) -> None:
    """An unknown dataset spec is refused before anything runs, with the accepted forms."""
    result = run_grid("--datasets", "mvtec", "--out", str(tmp_path))
    assert result.returncode != 0
    assert "unknown dataset 'mvtec'" in result.stderr
    assert "mvtec:<category>" in result.stderr
    assert not any(tmp_path.iterdir())


def test_mean_std() -> None:
    """``mean_std`` gives mean ± sample std, a single value alone, and an en dash when there is no value."""
    assert grid.mean_std([0.9, 1.0]) == "0.950 ± 0.071"
    assert grid.mean_std([0.5]) == "0.500"
    assert grid.mean_std([None, float("nan")]) == "–"  # noqa: RUF001  # the en dash mean_std writes for no value


def test_read_curve_takes_the_distillation_stage_and_the_gate(tmp_path: Path) -> None:
    """AAND's curve: the loss of stage 2 (not stage 1's), the gate at the end of stage 1; a missing file is None."""
    path = tmp_path / "curve.csv"
    path.write_text(
        "epoch,train_amplification_loss,train_gate_precision,train_gate_recall,train_hkd_loss,train_loss\n"
        "0,0.4,0.1,0.2,,0.09\n"
        "1,0.2,0.5,0.6,,0.05\n"
        "2,,,,4.0,4.0\n"
        "3,,,,3.0,3.0\n"
        "4,,,,,\n",
    )
    curve = grid.read_curve(path)
    assert curve == {
        "loss_first": 4.0,
        "loss_last": 3.0,
        "loss_ratio": 0.75,
        "amplification_first": 0.4,
        "amplification_last": 0.2,
        "gate_precision": 0.5,
        "gate_recall": 0.6,
    }
    assert grid.read_curve(tmp_path / "absent.csv") is None


@pytest.fixture(scope="module")
def task_helps() -> dict[str, dict]:
    """``python -m benchmarks <task> --help`` of every task, all in one fresh interpreter; by task."""
    outputs = run_mains("benchmarks.__main__:main", [[task, "--help"] for task in sorted(TASKS)], cwd=REPO)
    return dict(zip(sorted(TASKS), outputs, strict=True))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_imports_and_answers_help(task: str, task_helps: dict[str, dict]) -> None:
    """Each task of ``python -m benchmarks`` imports (no stale import after a refactor) and prints its options."""
    result = task_helps[task]
    assert result["status"] == 0, result["stderr"][-3000:]
    assert "usage:" in result["stdout"]
