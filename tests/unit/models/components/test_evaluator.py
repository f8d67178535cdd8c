# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The evaluator on images without masks: pixel metrics left out, no torchmetrics warning."""

import warnings
from pathlib import Path

import pytest
import torch
from anomalib.data import Folder
from anomalib.engine import Engine
from sklearn.metrics import roc_auc_score

from anomalib_kd_ext.models import DSKD


def test_image_only_data_reports_image_metrics_without_warnings(
    tiny_dataset: Path,
    resnet18: dict,
    tmp_path: Path,
) -> None:
    """A Folder without masks: image AUROC and F1 only, and no "compute ... before update" warning."""
    datamodule = Folder(
        name="parts",
        root=tiny_dataset / "tiny",
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        train_batch_size=3,
        eval_batch_size=3,
        num_workers=0,
    )
    model = DSKD(**resnet18, pre_processor=DSKD.configure_pre_processor(image_size=(64, 64)), visualizer=False)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", max_epochs=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    assert set(metrics) == {"image_AUROC", "image_F1Score"}
    # The reported AUROC is that of the model's own test predictions (what the evaluator saw), whatever its value.
    batches = engine.predict(model=model, dataloaders=datamodule.test_dataloader())
    labels = torch.cat([batch.gt_label for batch in batches]).numpy()
    scores = torch.cat([batch.pred_score for batch in batches]).float().numpy()
    assert metrics["image_AUROC"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    assert not [w for w in caught if "before the ``update``" in str(w.message) or "compute" in str(w.message)]
