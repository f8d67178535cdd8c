# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``python -m anomalib_kd_ext.compare`` on tiny generated Folder datasets, with and without defective images."""

import csv
import sys
from pathlib import Path

import pytest

from anomalib_kd_ext.compare.spec import COLUMNS
from helpers import make_mvtec_like, run_offline

pytestmark = pytest.mark.usefixtures("lite0_weights")
FAST = ["--epochs", "1", "--image-size", "64", "--batch-size", "4", "--accelerator", "cpu"]


def compare(root: Path, out: Path, *args: str) -> "tuple[int, str]":
    """Run the installed command from a folder outside the repository; exit code and output."""
    command = [sys.executable, "-m", "anomalib_kd_ext.compare", str(root), "--out", str(out), *FAST, *args]
    result = run_offline(command, cwd=out.parent)
    return result.returncode, result.stdout + result.stderr


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_compare_with_defects_ranks_models_and_reports_recall_at_the_threshold(tmp_path: Path) -> None:
    """One of anomalib's models and one of ours: table, CSV and picture agree with the per-image predictions."""
    root = make_mvtec_like(tmp_path / "data", category="parts", n_train=20, n_good=4, n_defect=4) / "parts"
    out = tmp_path / "out"
    code, output = compare(root, out, "--models", "Stfpm", "AAND")
    assert code == 0, output[-3000:]
    columns, rows = read_csv(out / "compare.csv")
    assert columns == COLUMNS
    assert [row["model"] for row in rows] == ["Stfpm", "AAND"]
    for row in rows:
        assert row["dataset"] == "folder"
        assert row["category"] == "parts"
        assert int(row["validation_good_images"]) == 4  # 20 % of 20 good training images held out
        assert (row["test_good_images"], row["test_defective_images"]) == ("4", "4")
        assert row["image_AUROC"]
        assert row["pixel_AUROC"]  # the Folder has masks
        # The recall and the share of good images flagged are those of the per-image labels, which are the
        # exported graph's rule (normalised score above 0.5).
        _, images = read_csv(out / "predictions" / f"{row['model']}_seed0_e1_64px_b4_far0.05.csv")
        assert len(images) == 8
        for image in images:
            assert image["pred_label"] == str(int(float(image["pred_score"]) > 0.5))
        defects = [int(image["pred_label"]) for image in images if image["label"] == "1"]
        goods = [int(image["pred_label"]) for image in images if image["label"] == "0"]
        assert float(row["recall_at_false_alarm"]) == pytest.approx(sum(defects) / len(defects))
        assert float(row["good_flagged"]) == pytest.approx(sum(goods) / len(goods))
        assert float(row["train_seconds"]) > 0
        assert float(row["inference_ms_per_image"]) > 0
    markdown = (out / "compare.md").read_text()
    ranked = sorted(rows, key=lambda row: (-float(row["image_AUROC"]), -float(row["pixel_AUROC"])))
    positions = [markdown.index(f"| {rank} | {row['model']} |") for rank, row in enumerate(ranked, start=1)]
    assert positions == sorted(positions)
    assert "recall at 5 % false alarms" in markdown
    assert "4 good images held out of training (too few for 5 %" in markdown  # 5 % needs 19
    assert (out / "heatmaps.png").stat().st_size > 20_000
    assert "results:" in output


def test_compare_without_defects_reports_thresholds_ranks_nothing_and_resumes(tmp_path: Path) -> None:
    """Good images only: each model's threshold and times, a plain sentence, no rank; a rerun trains nothing."""
    data = make_mvtec_like(tmp_path / "data", category="parts", n_train=20, n_good=4, n_defect=1) / "parts"
    root = tmp_path / "good_only"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (data / "train/good").rename(root / "train/good")
    (data / "test/good").rename(root / "test/good")
    out = tmp_path / "out"
    code, output = compare(root, out, "--models", "RD", "--false-alarm-rate", "0.2")
    assert code == 0, output[-3000:]
    _, rows = read_csv(out / "compare.csv")
    (row,) = rows
    assert row["image_AUROC"] == ""
    assert row["recall_at_false_alarm"] == ""
    assert float(row["image_threshold"]) > 0
    assert (row["test_good_images"], row["test_defective_images"]) == ("4", "0")
    flagged = float(row["good_flagged"])
    markdown = (out / "compare.md").read_text()
    assert "accuracy cannot be compared without them, so nothing is ranked" in markdown
    assert f"| RD | {float(row['image_threshold']):.4f} | 4 | {flagged:.3f} |" in markdown
    assert "| rank |" not in markdown
    assert "expected share of new good parts flagged: 20 %" in markdown  # k = floor(0.2 * 5) - 1 = 0: 1 / 5
    assert (out / "heatmaps.png").is_file()
    csv_before = (out / "compare.csv").read_text()

    code, output = compare(root, out, "--models", "RD", "--false-alarm-rate", "0.2")
    assert code == 0, output[-3000:]
    assert "in " in output
    assert "skipped" in output
    assert (out / "compare.csv").read_text() == csv_before


def test_compare_refuses_a_folder_without_good_training_images(tmp_path: Path) -> None:
    """No ``train/good``: exit 2 before anything runs, naming the folder and the option."""
    (tmp_path / "empty").mkdir()
    code, output = compare(tmp_path / "empty", tmp_path / "out")
    assert code == 2
    assert "train/good not found" in output
    assert "--normal-dir" in output
    assert not (tmp_path / "out").exists()
