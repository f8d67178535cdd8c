# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Messy data through anomalib's Folder: what works, and what stops before training with the file and the fix."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anomalib.data import Folder, MVTecAD
from PIL import Image

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.runtime import DatasetProblemsError, check_image_files, check_mask_folders, show_uncaught_briefly
from helpers import RESNET18, assert_metrics_match_predictions, fit_on_cpu, run_offline


class Listing:
    """A datamodule stand-in: anomalib's ``samples`` frames of the train and test datasets."""

    def __init__(self, images: list[Path], masks: list[str] | None = None) -> None:
        frame = pd.DataFrame({"image_path": [str(p) for p in images], "mask_path": masks or [""] * len(images)})
        self.train_data = type("Data", (), {"samples": frame})()
        self.test_data = None


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _folder(root: Path, train: list[np.ndarray]) -> Folder:
    rng = np.random.default_rng(0)
    for index, array in enumerate(train):
        _save(root / "train/good" / f"{index:03d}.png", array)
    for index in range(2):
        _save(root / "test/good" / f"{index:03d}.png", rng.integers(0, 255, (64, 64, 3), np.uint8))
        _save(root / "test/defect" / f"{index:03d}.png", rng.integers(0, 255, (64, 64, 3), np.uint8))
    return Folder(
        name="messy",
        root=root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        train_batch_size=2,
        eval_batch_size=2,
        num_workers=0,
    )


def _dskd() -> DSKD:
    return DSKD(**RESNET18, pre_processor=DSKD.configure_pre_processor(image_size=(64, 64)))


def test_grayscale_rgba_and_palette_images_train(tmp_path: Path) -> None:
    """Mixed colour modes are converted to RGB by anomalib; training and testing work."""
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, (64, 64), np.uint8)
    rgba = rng.integers(0, 255, (64, 64, 4), np.uint8)
    _save(tmp_path / "data/train/good/palette.png", gray)
    Image.open(tmp_path / "data/train/good/palette.png").convert("P").save(tmp_path / "data/train/good/palette.png")
    datamodule = _folder(tmp_path / "data", [gray, rgba, gray])
    model = _dskd()
    engine = fit_on_cpu(model, datamodule, tmp_path)
    metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    assert_metrics_match_predictions(engine, model, datamodule, metrics)


def test_single_training_image_trains(tmp_path: Path) -> None:
    """AAND trains both stages on a dataset of a single training image."""
    datamodule = _folder(tmp_path / "data", [np.random.default_rng(2).integers(0, 255, (64, 64, 3), np.uint8)])
    model = AAND(
        **RESNET18,
        amplification_epochs=1,
        distillation_epochs=1,
        pre_processor=AAND.configure_pre_processor(image_size=(64, 64)),
    )
    fit_on_cpu(model, datamodule, tmp_path)
    assert model.trainer.current_epoch == 2


def test_sixteen_bit_image_stops_training_with_the_file(tmp_path: Path) -> None:
    """A 16-bit training image stops training with an error naming the file and the fix."""
    rng = np.random.default_rng(3)
    datamodule = _folder(tmp_path / "data", [rng.integers(0, 255, (64, 64, 3), np.uint8)] * 2)
    _save(tmp_path / "data/train/good/deep.png", rng.integers(0, 65535, (64, 64), np.uint16))
    with pytest.raises(
        ValueError,
        match=r"more than 8 bits per pixel .*: .*deep\.png\. Fix: convert the dataset to 8-bit",
    ):
        fit_on_cpu(_dskd(), datamodule, tmp_path)


@pytest.mark.parametrize("problem", ["empty", "corrupt", "missing", "mask_size", "truncated"])
def test_unreadable_files_are_named(problem: str, tmp_path: Path) -> None:
    """Each kind of unreadable file (empty, corrupt, missing, truncated, bad mask size) is named with its fix."""
    good = _save(tmp_path / "good.png", np.zeros((32, 32, 3), np.uint8))
    bad = tmp_path / f"{problem}.png"
    masks = None
    if problem == "empty":
        bad.write_bytes(b"")
    elif problem == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    elif problem == "truncated":
        _save(bad, np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
        bad.write_bytes(bad.read_bytes()[:-20])
    elif problem == "mask_size":
        _save(bad, np.zeros((32, 32, 3), np.uint8))
        masks = ["", str(_save(tmp_path / "mask.png", np.zeros((16, 32), np.uint8)))]
    expected = {
        "empty": r"1 empty \(0 bytes\): .*empty\.png\. Fix: ",
        "corrupt": r"1 not an image PIL can read: .*corrupt\.png\. Fix: ",
        "missing": r"1 file not found: .*missing\.png\. Fix: ",
        "mask_size": r"1 mask size differs from its image's: .*mask\.png\. Fix: resize the masks",
        "truncated": r"1 truncated .*: .*truncated\.png\. Fix: copy or download them again",
    }[problem]
    with pytest.raises(ValueError, match=expected):
        check_image_files(Listing([good, bad], masks))


def test_every_bad_file_in_one_short_message_and_a_report(tmp_path: Path) -> None:
    """The reported case: a truncated JPEG and a text file named .jpg in train/good fail once, naming both."""
    rng = np.random.default_rng(4)
    datamodule = _folder(tmp_path / "data", [rng.integers(0, 255, (64, 64, 3), np.uint8)] * 2)
    truncated = tmp_path / "data/train/good/truncated.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (tmp_path / "data/train/good/zz_text.jpg").write_text("not an image")
    for index in range(3):
        (tmp_path / f"data/train/good/empty_{index}.png").write_bytes(b"")
    with pytest.raises(DatasetProblemsError) as error:
        fit_on_cpu(_dskd(), datamodule, tmp_path / "run")
    message = str(error.value)
    assert message.startswith("5 bad file(s) among ")
    assert len(message.splitlines()) <= 10
    assert "truncated.jpg" in message
    assert "zz_text.jpg" in message
    assert "3 empty (0 bytes): " in message
    assert "and 2 more" in message
    report = error.value.report
    # beside the run (anomalib's versioned root_dir/<model>/<dataset>/vN)
    assert report.name == "dataset_problems.txt"
    assert report.is_relative_to(tmp_path / "run")
    assert f"full list: {report}" in message
    listed = report.read_text().splitlines()
    assert len(listed) == 5
    assert {line.split("\t")[0] for line in listed} == {"truncated", "unreadable", "empty"}
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_stock_cli_prints_the_short_message_without_frames(tmp_path: Path) -> None:
    """The reported case through ``anomalib fit``: exit status 1, both files, no traceback around the message."""
    rng = np.random.default_rng(5)
    _folder(tmp_path / "data", [rng.integers(0, 255, (64, 64, 3), np.uint8)] * 2)
    truncated = tmp_path / "data/train/good/truncated.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (tmp_path / "data/train/good/zz_text.jpg").write_text("not an image")
    data = ["--data", "Folder", "--data.name", "messy", "--data.root", str(tmp_path / "data")]
    data += ["--data.normal_dir", "train/good", "--data.normal_test_dir", "test/good"]
    data += ["--data.abnormal_dir", "test/defect", "--data.num_workers", "0"]
    model = ["--model", "AAND", "--model.backbone", "resnet18", "--model.pre_trained", "false"]
    command = [sys.executable, "-c", "from anomalib.cli.cli import main; main()", "fit", *model, *data]
    result = run_offline([*command, "--default_root_dir", str(tmp_path / "run")], cwd=tmp_path)
    assert result.returncode == 1
    message = result.stderr[result.stderr.index("DatasetProblemsError: ") :]
    assert message.startswith("DatasetProblemsError: 2 bad file(s) among ")
    assert "truncated.jpg" in message
    assert "zz_text.jpg" in message
    assert len(message.splitlines()) <= 10
    assert "Traceback" not in result.stderr
    assert "│" not in result.stderr  # no frame of rich's traceback either


def test_brief_hook_passes_other_exceptions_on(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Only dataset errors are shortened; any other uncaught exception reaches the previous hook unchanged."""
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda _kind, value, _traceback: seen.append(value))
    show_uncaught_briefly()
    show_uncaught_briefly()  # wraps once
    other = RuntimeError("other")
    sys.excepthook(RuntimeError, other, None)
    sys.excepthook(DatasetProblemsError, DatasetProblemsError("1 bad file(s)", [], None), None)
    assert seen == [other]
    assert capsys.readouterr().err == "DatasetProblemsError: 1 bad file(s)\n"


def test_anomalous_image_without_mask_is_named(tmp_path: Path) -> None:
    """Where anomalous test images have masks, one without its mask is reported."""
    images = [_save(tmp_path / f"{i}.png", np.zeros((8, 8, 3), np.uint8)) for i in range(3)]
    mask = str(_save(tmp_path / "0_mask.png", np.zeros((8, 8), np.uint8)))
    listing = Listing(images, [mask, "", ""])
    listing.train_data.samples["label_index"] = [1, 1, 0]
    with pytest.raises(DatasetProblemsError, match=r"1 anomalous image without a mask .*: .*1\.png\. Fix"):
        check_image_files(listing)


def _masked_folder(root: Path, masks: list[str]) -> Folder:
    """A Folder dataset with anomalous images ``0.png`` and ``1.png`` in ``bad/`` and ``masks`` in ``mask/``."""
    for name in ["0.png", "1.png"]:
        _save(root / "bad" / name, np.full((8, 8, 3), 200, np.uint8))
    _save(root / "good/0.png", np.zeros((8, 8, 3), np.uint8))
    for name in masks:
        _save(root / "mask" / name, np.zeros((8, 8), np.uint8))
    return Folder(name="m", root=root, normal_dir="good", abnormal_dir="bad", mask_dir="mask", num_workers=0)


def test_stray_mask_in_a_folder_dataset_is_named_before_anomalib_misreads_it(tmp_path: Path) -> None:
    """A mask without an image: our message names it, where anomalib's set-up would fail with a NumPy length error."""
    datamodule = _masked_folder(tmp_path, ["0.png", "1.png", "2.png"])
    with pytest.raises(
        DatasetProblemsError,
        match=r"1 mask without an anomalous image .*: .*mask/2\.png\. Fix: delete",
    ):
        check_mask_folders(datamodule, report_dir=tmp_path / "run")
    assert (tmp_path / "run/dataset_problems.txt").read_text() == f"mask_without_image\t{tmp_path / 'mask/2.png'}\n"
    with pytest.raises(ValueError, match="cannot assign 3 input values"):  # what the user saw before
        datamodule.setup()


def test_mvtec_layout_names_stray_and_missing_masks_in_every_defect(tmp_path: Path) -> None:
    """MVTec layout: a missing ``_mask`` in one defect and a stray one in another are both named; longest name wins."""
    base = tmp_path / "cat"
    for defect, images, masks in [("crack", ["1", "10"], ["10_mask"]), ("hole", ["000"], ["000_mask", "001_mask"])]:
        for name in images:
            _save(base / "test" / defect / f"{name}.png", np.full((8, 8, 3), 200, np.uint8))
        for name in masks:
            _save(base / "ground_truth" / defect / f"{name}.png", np.zeros((8, 8), np.uint8))
    _save(base / "test/good/000.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetProblemsError) as caught:
        check_mask_folders(MVTecAD(root=tmp_path, category="cat"))
    assert sorted((kind, Path(path).relative_to(base).as_posix()) for kind, path, _ in caught.value.problems) == [
        ("mask_without_image", "ground_truth/hole/001_mask.png"),
        ("no_mask", "test/crack/1.png"),
    ]


def test_paired_masks_and_datasets_without_masks_pass(tmp_path: Path) -> None:
    """Matching masks, a Folder dataset without masks and a datamodule of another kind raise nothing."""
    check_mask_folders(_masked_folder(tmp_path / "a", ["0_mask.png", "1_mask.png"]))
    check_mask_folders(Folder(name="n", root=tmp_path / "a", normal_dir="good", abnormal_dir="bad"))
    check_mask_folders(Listing([]))
    check_mask_folders(None)


def test_fit_stops_on_a_stray_mask_with_the_short_message(tmp_path: Path) -> None:
    """Through the model: anomalib's ``setup`` fails on the stray mask, the runtime callback names it instead."""
    datamodule = _masked_folder(tmp_path / "data", ["0.png", "1.png", "2.png"])
    with pytest.raises(DatasetProblemsError, match=r"mask/2\.png"):
        fit_on_cpu(_dskd(), datamodule, tmp_path / "run")


def test_readable_listing_passes(tmp_path: Path) -> None:
    """Readable grey, RGB and RGBA images pass the check, and so does no listing at all."""
    images = [_save(tmp_path / f"{i}.png", np.zeros((8, 8, c), np.uint8).squeeze()) for i, c in enumerate((1, 3, 4))]
    check_image_files(Listing(images))
    check_image_files(None)  # no datamodule attached: nothing to check


@pytest.mark.parametrize("model_class", [AAND, DSKD])
def test_test_set_without_anomalies_is_refused(model_class: type, tmp_path: Path) -> None:
    """Training works without anomalous test images; testing is refused with the fix."""
    # An MVTec category with an empty test folder: anomalib moves training images into the test set and would
    # report AUROC 0.0. Training still works (a model for predict); testing stops with the fix.
    from anomalib.data import MVTecAD

    from helpers import make_mvtec_like

    root = make_mvtec_like(tmp_path / "data", n_good=0, n_defect=0)
    datamodule = MVTecAD(root=root, category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0)
    stages = {"amplification_epochs": 1, "distillation_epochs": 1} if model_class is AAND else {}
    model = model_class(**RESNET18, **stages, pre_processor=model_class.configure_pre_processor(image_size=(64, 64)))
    engine = fit_on_cpu(model, datamodule, tmp_path / "run")
    with pytest.raises(ValueError, match="none of them is anomalous"):
        engine.test(model=model, datamodule=datamodule)
