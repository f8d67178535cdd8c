# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``python -m benchmarks device-check`` without a GPU: its CPU parts on generated images, the GPU parts skipped."""

import csv
import sys
from pathlib import Path

import pytest
import torch

from helpers import run_offline

REPO = Path(__file__).parents[2]


def test_help() -> None:
    """The command documents its three steps."""
    result = run_offline([sys.executable, "-m", "benchmarks", "device-check", "--help"], cwd=REPO)
    assert result.returncode == 0, result.stderr
    for option in ("--prepare", "--data", "--reload", "--tiny-only"):
        assert option in result.stdout


@pytest.mark.slow  # four CPU fits in a fresh process (~30 s): the GPU script's smoke run, with -m slow (CI)
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the check runs its GPU parts (minutes)")
def test_cpu_parts_on_generated_images(tmp_path: Path) -> None:
    """Fits of both models on the CPU, the deterministic repeat identical, epoch times; GPU parts said skipped."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks", "device-check", "--tiny-only", "--out", str(out)]
    result = run_offline([*command, "--work", str(tmp_path / "work")], cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with (out / "device_check.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    checks = {(row["check"], row["model"], row["stage"]) for row in rows}
    skipped = [row["note"] for row in rows if row["note"].startswith("skipped")]
    assert skipped == ["skipped: no CUDA device"] * 3  # CPU vs CUDA, host syncs, 16 / bf16 fits
    fits = [row for row in rows if row["check"] == "fit"]
    assert {row["model"] for row in fits if row["model"]} == {"AAND", "DSKD"}
    assert all(row["passed"] == "True" and row["note"] == "weights finite" for row in fits if row["model"])
    repeats = [row for row in rows if row["check"] == "deterministic_repeat"]
    assert [row["passed"] for row in repeats] == ["True", "True"]  # the same seed gives the same weights
    for stage in (("AAND", "amplification"), ("AAND", "distillation"), ("DSKD", "train")):
        assert ("seconds_per_epoch", *stage) in checks
    assert "CPU" in rows[0]["device"]
    assert (out / "device_check.md").read_text().startswith("Device check on ")
