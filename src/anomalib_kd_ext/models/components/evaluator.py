# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Default evaluator of the plugin's models: anomalib's default metrics plus AUPRO.

The KD papers report PRO (the per-region overlap up to a false-positive rate of 0.3), which
anomalib's default evaluator leaves out.

Example:
    >>> evaluator = kd_evaluator()
    >>> sorted(metric.name for metric in evaluator.test_metrics)
    ['image_AUROC', 'image_F1Score', 'pixel_AUPRO', 'pixel_AUROC', 'pixel_F1Score']
"""

from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score


def kd_evaluator() -> Evaluator:
    """Image/pixel AUROC and F1 (as anomalib's default) and pixel AUPRO with FPR limit 0.3."""
    return Evaluator(
        test_metrics=[
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, fpr_limit=0.3),
        ],
    )
