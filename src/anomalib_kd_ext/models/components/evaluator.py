# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Default evaluator of the plugin's models: anomalib's default metrics plus AUPRO.

The KD papers report PRO (the per-region overlap up to a false-positive rate of 0.3), which
anomalib's default evaluator leaves out.

On data without masks (a ``Folder`` of images only, ELPV) the pixel metrics never receive a batch: anomalib's
evaluator still computes them, and torchmetrics warns for each ("compute method ... was called before the update
method") and reports a meaningless value. :class:`KDEvaluator` leaves such metrics out and says so once, at info level.

Example:
    >>> evaluator = kd_evaluator()
    >>> sorted(metric.name for metric in evaluator.test_metrics)
    ['image_AUROC', 'image_F1Score', 'pixel_AUPRO', 'pixel_AUROC', 'pixel_F1Score']
"""

import logging
from collections.abc import Iterable

from anomalib.metrics import AUPRO, AUROC, AnomalibMetric, Evaluator, F1Score
from lightning.pytorch import LightningModule, Trainer

logger = logging.getLogger(__name__)


class KDEvaluator(Evaluator):
    """anomalib's ``Evaluator`` that leaves out the metrics no batch updated (pixel metrics without masks)."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute and log the validation metrics that received data."""
        del pl_module  # Unused argument.
        self._log_updated(trainer, self.val_metrics, "validation")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute and log the test metrics that received data."""
        del pl_module  # Unused argument.
        self._log_updated(trainer, self.test_metrics, "test")

    def _log_updated(self, trainer: Trainer, metrics: Iterable[AnomalibMetric], split: str) -> None:
        """As anomalib's epoch-end hooks, for the updated metrics only; the others are named once, at info level."""
        left_out = []
        for metric in metrics:
            if not getattr(metric, "update_called", True):  # a torchmetrics Metric that no batch updated
                left_out.append(metric.name)
                continue
            self.log(metric.name, metric)
            if trainer.barebones:  # logging is off: anomalib fills the trainer's metrics by hand
                value = metric.compute()
                trainer.callback_metrics[metric.name] = value
                trainer.logged_metrics[metric.name] = value
        if left_out:
            logger.info("Left out of the %s metrics, no batch had their fields (e.g. masks): %s.", split, left_out)


def kd_evaluator() -> Evaluator:
    """Image/pixel AUROC and F1 (as anomalib's default) and pixel AUPRO with FPR limit 0.3."""
    return KDEvaluator(
        test_metrics=[
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, fpr_limit=0.3),
        ],
    )
