# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The evaluator on images without masks: pixel metrics left out, no torchmetrics warning."""

import warnings
from pathlib import Path

from anomalib.data import Folder

from anomalib_kd_ext.models import DSKD
from helpers import RESNET18, fit_on_cpu, make_mvtec_like


def test_image_only_data_reports_image_metrics_without_warnings(tmp_path: Path) -> None:
    """A Folder without masks: image AUROC and F1 only, and no "compute ... before update" warning."""
    root = make_mvtec_like(tmp_path / "data", n_train=6)
    datamodule = Folder(
        name="parts",
        root=root / "tiny",
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        train_batch_size=3,
        eval_batch_size=3,
        num_workers=0,
    )
    model = DSKD(**RESNET18, pre_processor=DSKD.configure_pre_processor(image_size=(64, 64)), visualizer=False)
    engine = fit_on_cpu(model, datamodule, tmp_path / "run", default_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    assert set(metrics) == {"image_AUROC", "image_F1Score"}
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
    assert not [w for w in caught if "before the ``update``" in str(w.message) or "compute" in str(w.message)]
