# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The compare command's pieces that need no training: layouts, rows, the ranked table, the picked images."""

from pathlib import Path

import pytest
import torch

from anomalib_kd_ext.compare.__main__ import parse_args
from anomalib_kd_ext.compare.report import comparison_markdown, pick_images, read_rows, write_csv
from anomalib_kd_ext.compare.spec import COLUMNS, Cell, DatasetSpec, Settings
from anomalib_kd_ext.post_processing import expected_false_alarms

REPO = Path(__file__).parents[2]


def _row(model: str, image_auroc: float | None, pixel_auroc: float | None = None, **values: object) -> dict:
    row = dict.fromkeys(COLUMNS)
    row |= {
        "model": model,
        "dataset": "folder",
        "category": "parts",
        "seed": 0,
        "teacher": "t",
        "epochs": 3,
        "image_size": 64,
        "batch_size": 4,
        "image_AUROC": image_auroc,
        "pixel_AUROC": pixel_auroc,
        "false_alarm_rate": 0.05,
        "validation_good_images": 99,
        "test_good_images": 10,
        "test_defective_images": 10,
        "train_seconds": 12.0,
        "inference_ms_per_image": 3.5,
        "hardware": "cpu",
    }
    return row | values


def _tree(root: Path, folders: list[str]) -> Path:
    for folder in folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "000.png").write_bytes(b"")
    return root


def test_layout_is_detected_from_the_folders(tmp_path: Path) -> None:
    """``test/<defect types>`` with masks is MVTec AD's layout; ``test/defect`` or good images only is a Folder."""
    mvtec = _tree(tmp_path / "cable", ["train/good", "test/good", "test/crack", "ground_truth/crack"])
    assert parse_args([str(mvtec)]).dataset == DatasetSpec(kind="mvtec", category="cable", root=str(tmp_path))
    folder = _tree(tmp_path / "parts", ["train/good", "test/good", "test/defect", "ground_truth/defect"])
    spec = parse_args([str(folder), "--name", "line3"]).dataset
    assert spec == DatasetSpec("folder", "line3", str(folder), mask_dir="ground_truth/defect")
    assert spec.has_defects
    unmasked = _tree(tmp_path / "scratches", ["train/good", "test/good", "test/scratch", "test/dent"])
    spec = parse_args([str(unmasked)]).dataset  # defect types without masks: a Folder of them, image level
    assert (spec.kind, spec.abnormal_dir, spec.mask_dir) == ("folder", ["test/dent", "test/scratch"], None)
    good_only = _tree(tmp_path / "new", ["train/good"])
    spec = parse_args([str(good_only)]).dataset
    assert (spec.normal_test_dir, spec.abnormal_dir, spec.mask_dir) == (None, None, None)
    assert not spec.has_defects


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--false-alarm-rate", "5"], "--false-alarm-rate must lie between 0 and 1"),
        (["--val-split-ratio", "1"], "--val-split-ratio must lie between 0 and 1"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    """Out-of-range options end with exit 2 and a message naming the option."""
    root = _tree(tmp_path / "parts", ["train/good"])
    with pytest.raises(SystemExit) as exit_info:
        parse_args([str(root), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cell_round_trips_through_json() -> None:
    """The child process gets the same cell."""
    cell = Cell("AAND", DatasetSpec("folder", "parts", "/d"), 3, Settings(false_alarm_rate=0.01), "w", predictions="p")
    assert Cell.from_json(cell.to_json()) == cell


def test_table_ranks_by_image_auroc_and_states_the_threshold() -> None:
    """Best image AUROC first, pixel AUROC breaking ties, a model without AUROC last and unranked."""
    rows = [_row("Stfpm", 0.80), _row("AAND", 0.95, 0.90), _row("RD", 0.95, 0.93), _row("DSKD", None)]
    markdown = comparison_markdown(rows, "Models compared on parts")
    lines = [line for line in markdown.splitlines() if line.startswith("| ") and "rank" not in line]
    assert [line.split(" | ")[:2] for line in lines] == [
        ["| 1", "RD"],
        ["| 2", "AAND"],
        ["| 3", "Stfpm"],
        ["| –", "DSKD"],  # noqa: RUF001  # the en dash of no rank
    ]
    assert "at most 5 % of good parts flagged, set on 99 good images held out of training" in markdown
    assert "expected share of new good parts flagged: 5 %" in markdown  # k = 4: 5 / 100
    assert "nothing is ranked" not in markdown


def test_table_without_defects_ranks_nothing() -> None:
    """No defective test image: thresholds and times, the plain sentence, no rank column."""
    rows = [
        _row("AAND", None, test_defective_images=0, image_threshold=0.123456, good_flagged=0.1),
        _row("RD", None, test_defective_images=0, image_threshold=2.5, good_flagged=0.0, validation_good_images=9),
    ]
    markdown = comparison_markdown(rows, "t")
    assert "accuracy cannot be compared without them, so nothing is ranked" in markdown
    assert "| AAND | 0.1235 | 10 | 0.100 | 12 | 3.5 |" in markdown
    assert "| rank |" not in markdown


def test_too_few_held_out_images_are_said() -> None:
    """With fewer good images than the rate needs, the table says what the threshold flags instead."""
    markdown = comparison_markdown([_row("AAND", 0.9, validation_good_images=9)], "t")
    assert "too few for 5 %: the threshold is their highest score, which flags about 10 % of good parts" in markdown
    assert "hold out at least 19" in markdown
    assert expected_false_alarms(0.05, 9) == pytest.approx(0.1)
    assert expected_false_alarms(0.05, 99) == pytest.approx(0.05)
    assert expected_false_alarms(0.01, 250) == pytest.approx(2 / 251)


def test_picked_images_are_the_most_and_least_anomalous_by_mean_score() -> None:
    """The mean of the models' normalised scores orders the images; only images every model scored are shown."""
    paths = [f"img{i}.png" for i in range(8)]
    first = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.3, 0.0, 0.7])
    second = torch.tensor([0.2, 0.6, 0.9, 0.1, 0.4, 0.3, 0.1, 0.8])
    predictions = {
        "A": {"paths": paths, "scores": first},
        "B": {"paths": paths[::-1], "scores": second.flip(0)},  # another order: matched by path
    }
    # means: 0.15, 0.75, 0.70, 0.15, 0.60, 0.30, 0.05, 0.75
    assert pick_images(predictions, most=3, least=2) == ["img1.png", "img7.png", "img2.png", "img3.png", "img6.png"]
    predictions["B"] = {"paths": paths[:3], "scores": second[:3]}
    assert pick_images(predictions, most=3, least=2) == ["img1.png", "img2.png", "img0.png"]


def test_rows_of_an_older_csv_read_with_the_new_columns_empty(tmp_path: Path) -> None:
    """A grid CSV written before the false-alarm columns existed reads with them as None, and writes back whole."""
    rows = read_rows(REPO / "benchmarks/results/grid_small_cpu/grid.csv")
    assert len(rows) == 12
    assert all(row["recall_at_false_alarm"] is None and row["false_alarm_rate"] is None for row in rows)
    assert all(0.2 < row["image_AUROC"] <= 1 for row in rows)
    write_csv(rows, tmp_path / "grid.csv", COLUMNS)
    assert read_rows(tmp_path / "grid.csv") == rows
