# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The false-alarm threshold: its order statistic, its guarantee on new good images, and its life in a model."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import Folder
from anomalib.engine import Engine
from anomalib.models import Padim

from anomalib_kd_ext.post_processing import FalseAlarmPostProcessor, _FalseAlarmThreshold
from helpers import TEST_ACCELERATOR, make_mvtec_like


def _metric(rate: float) -> _FalseAlarmThreshold:
    return _FalseAlarmThreshold(false_alarm_rate=rate)


@pytest.mark.parametrize(("rate", "expected"), [(0.1, 18.0), (0.01, 19.0), (0.5, 10.0), (0.2, 16.0)])
def test_threshold_is_the_order_statistic(rate: float, expected: float) -> None:
    """Of 20 good scores 0..19, k = floor(rate * 21) - 1 lie above the threshold (at least 0); defects ignored."""
    metric = _metric(rate)
    metric.update(torch.arange(20.0), torch.zeros(20, dtype=torch.long))
    metric.update(torch.full((5,), 100.0), torch.ones(5, dtype=torch.long))
    threshold = metric.compute()
    assert float(threshold) == expected
    assert int((torch.arange(20.0) > threshold).sum()) == max(math.floor(rate * 21) - 1, 0)


def test_no_normal_image_gives_no_threshold() -> None:
    """Without a good image the threshold is NaN (anomalib then leaves labels unset)."""
    metric = _metric(0.05)
    metric.update(torch.rand(4), torch.ones(4, dtype=torch.long))
    assert torch.isnan(metric.compute())


@pytest.mark.parametrize("rate", [0, 1, -0.1, 1.5])
def test_bad_rate_is_a_clear_error(rate: float) -> None:
    """A rate outside (0, 1) is refused with the fix."""
    with pytest.raises(ValueError, match="between 0 and 1"):
        FalseAlarmPostProcessor(false_alarm_rate=rate)


def test_new_good_images_are_flagged_at_the_promised_rate() -> None:
    """Over many draws, new good images are flagged with probability (k + 1) / (n + 1), whatever the distribution."""
    generator = torch.Generator().manual_seed(0)
    n, m, rate = 60, 200, 0.05
    shares = []
    for _ in range(400):
        validation = torch.randn(n, generator=generator).exp()  # a skewed score distribution
        metric = _metric(rate)
        metric.update(validation, torch.zeros(n, dtype=torch.long))
        threshold = metric.compute()
        shares.append(float((torch.randn(m, generator=generator).exp() > threshold).float().mean()))
    k = math.floor(rate * (n + 1)) - 1
    promised = (k + 1) / (n + 1)  # 3 / 61 = 0.049, at most the rate
    assert abs(np.mean(shares) - promised) < 0.006  # standard error of the mean share over 400 draws: about 0.0015


def _raw_scores(model: Padim, images: torch.Tensor) -> torch.Tensor:
    """Scores before post-processing: the pre-processor's transform, then the torch model."""
    with torch.no_grad():
        return model.model(model.pre_processor.transform(images.to(model.device))).pred_score.flatten().cpu()


def test_threshold_from_good_images_in_checkpoint_and_labels(tmp_path: Path) -> None:
    """Anomalib's Padim on good images only: threshold = order statistic of its validation scores, kept on reload."""
    root = make_mvtec_like(tmp_path / "data", n_train=20, n_good=4, n_defect=4)
    datamodule = Folder(
        name="parts",
        root=root / "tiny",
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        val_split_mode="from_train",
        val_split_ratio=0.5,
        seed=0,
    )
    model = Padim(
        backbone="resnet18",
        layers=["layer1", "layer2"],
        pre_trained=False,
        post_processor=FalseAlarmPostProcessor(false_alarm_rate=0.2),
        pre_processor=Padim.configure_pre_processor(image_size=(64, 64)),
        evaluator=False,
        visualizer=False,
    )
    engine = Engine(default_root_dir=tmp_path / "run", accelerator=TEST_ACCELERATOR, max_epochs=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    threshold = float(model.post_processor.image_threshold)
    # the validation split holds 10 good images: the 2nd highest raw score (k = floor(0.2 * 11) - 1 = 1 above it)
    model.eval()
    raw = torch.cat([_raw_scores(model, batch.image) for batch in datamodule.val_dataloader()])
    assert raw.numel() == 10
    assert threshold == pytest.approx(float(raw.sort(descending=True).values[1]), rel=1e-6)
    # the threshold and the rate travel in the checkpoint
    checkpoint = engine.trainer.checkpoint_callback.best_model_path
    reloaded = Padim.load_from_checkpoint(checkpoint, map_location="cpu")
    # anomalib rebuilds its default post-processor class; the threshold is a buffer of it and loads with the weights
    assert float(reloaded.post_processor.image_threshold) == pytest.approx(threshold)
    # labels follow the threshold: exactly the images scoring above it are flagged
    predictions = engine.predict(model=model, dataloaders=datamodule.test_dataloader())
    scores = torch.cat([p.pred_score.flatten() for p in predictions])
    labels = torch.cat([p.pred_label.flatten() for p in predictions])
    with torch.no_grad():  # predict batches hold the pre-processed images
        raw_test = torch.cat([model.model(p.image).pred_score.flatten() for p in predictions])
    assert torch.equal(labels.bool(), raw_test > threshold)
    assert scores.numel() == 8
    # the exported OpenVINO model labels with the same threshold: the folder scorer's pred_label
    from anomalib.deploy import ExportType

    from anomalib_kd_ext.deploy import score_folder

    exported = engine.export(model=model, export_type=ExportType.OPENVINO, export_root=tmp_path / "export")
    rows = score_folder(exported, root / "tiny" / "test", tmp_path / "scores", overlays=False)
    paths = [Path(path) for p in predictions for path in p.image_path]
    expected = {
        path.relative_to(root / "tiny" / "test").as_posix(): bool(label)
        for path, label in zip(paths, labels, strict=True)
    }
    assert {row["image"]: row["pred_label"] for row in rows} == expected
