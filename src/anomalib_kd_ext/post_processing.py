# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

r"""An alarm set from good parts only: the image threshold at a chosen false-alarm rate.

anomalib's default post-processor sets the image threshold that maximises F1 on the validation split, which needs
defective images there; with good images only it falls back to the highest validation score. A production line
usually starts with good parts only and asks for something else anyway: "flag at most 1 % of good parts".
:class:`FalseAlarmPostProcessor` sets the image threshold from the scores of the **normal** validation images: the
``(k + 1)``-th highest of ``n``, so that ``k`` of them score above it. A new good image, exchangeable with those
``n``, is then flagged with probability ``(k + 1) / (n + 1)``, whatever the model and the score distribution, and
``k = floor(rate * (n + 1)) - 1`` is the largest ``k`` for which that is at most ``rate``. With fewer than
``1 / rate - 1`` good validation images no threshold keeps the rate (``k`` would be -1): the highest score is used,
which flags ``1 / (n + 1)`` of new good images, and a warning says how many images the rate needs. The count of good
images flagged out of ``m`` follows a beta-binomial distribution (``a = k + 1``, ``b = n - k``), which the tests use
as the interval.

It is anomalib's :class:`~anomalib.post_processing.PostProcessor` with another image-threshold metric: the
threshold is a buffer like anomalib's, so it is saved in checkpoints and exported with the model (torch, ONNX,
OpenVINO: the exported graph's ``pred_label`` uses it). Normalisation, the pixel threshold (F1 where the validation
masks hold defects, else the image threshold) and everything else stay anomalib's. It works with any anomalib image
model, e.g. ``Stfpm(post_processor=FalseAlarmPostProcessor(false_alarm_rate=0.01))``; on the command line:

    anomalib train --model Stfpm --model.post_processor anomalib_kd_ext.post_processing.FalseAlarmPostProcessor \
        --model.post_processor.false_alarm_rate 0.01 --data Folder ... --data.val_split_mode from_train

Example:
    >>> import torch
    >>> from anomalib_kd_ext.post_processing import _FalseAlarmThreshold
    >>> metric = _FalseAlarmThreshold(false_alarm_rate=0.1)
    >>> metric.update(torch.arange(20.0), torch.zeros(20, dtype=torch.long))
    >>> float(metric.compute())  # a new good score lies above it with probability 2 / 21 (at most 10 %)
    18.0
"""

import logging
import math
from typing import Any

import torch
from anomalib.metrics import AnomalibMetric
from anomalib.metrics.threshold import Threshold
from anomalib.post_processing import PostProcessor
from lightning.pytorch import LightningModule, Trainer
from torchmetrics.utilities import dim_zero_cat

logger = logging.getLogger(__name__)


def check_rate(false_alarm_rate: float) -> float:
    """A false-alarm rate must lie in (0, 1)."""
    if not 0 < false_alarm_rate < 1:
        msg = f"false_alarm_rate must lie between 0 and 1 (e.g. 0.01 for 1 % of good parts), got {false_alarm_rate}."
        raise ValueError(msg)
    return float(false_alarm_rate)


def scores_above(false_alarm_rate: float, count: int) -> int:
    """``k = floor(rate * (count + 1)) - 1``: good scores above the threshold (-1: too few)."""
    return math.floor(false_alarm_rate * (count + 1)) - 1


def expected_false_alarms(false_alarm_rate: float, count: int) -> float:
    """The share of new good images flagged, ``(k + 1) / (count + 1)``, by a threshold set on ``count`` good images.

    At most ``false_alarm_rate``, except with too few images (``1 / (count + 1)``: the highest score is used).
    """
    return (max(scores_above(false_alarm_rate, count), 0) + 1) / (count + 1)


class _FalseAlarmThreshold(Threshold):
    """The score a new normal image exceeds with probability at most ``false_alarm_rate`` (see the module docstring)."""

    def __init__(self, false_alarm_rate: float = 0.01, **kwargs: Any) -> None:  # noqa: ANN401  # torchmetrics' options
        super().__init__(**kwargs)
        self.false_alarm_rate = check_rate(false_alarm_rate)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.scores: list[torch.Tensor]
        self.labels: list[torch.Tensor]

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Keep the scores and labels of a batch."""
        self.scores.append(preds.detach().flatten().float())
        self.labels.append(target.detach().flatten())

    def compute(self) -> torch.Tensor:
        """The ``(k + 1)``-th highest of ``n`` normal scores, ``k = floor(rate * (n + 1)) - 1`` (NaN without any)."""
        scores, labels = dim_zero_cat(self.scores), dim_zero_cat(self.labels)
        normal = scores[labels == 0]
        count = normal.numel()
        if count == 0:
            logger.warning("No normal image in the validation split: the false-alarm threshold cannot be set.")
            return torch.tensor(float("nan"), device=scores.device)
        above = scores_above(self.false_alarm_rate, count)
        if above < 0:
            needed = math.ceil(1 / self.false_alarm_rate) - 1
            logger.warning(
                "%d good validation images are too few for a false-alarm rate of %g (it needs %d): the threshold is "
                "their highest score, which flags about %.1f %% of good images.",
                count,
                self.false_alarm_rate,
                needed,
                100 / (count + 1),
            )
            above = 0
        return normal.sort(descending=True).values[above]


class FalseAlarmThreshold(AnomalibMetric, _FalseAlarmThreshold):  # type: ignore[misc]
    """:class:`_FalseAlarmThreshold` on anomalib batches (``fields=["pred_score", "gt_label"]``)."""


class FalseAlarmPostProcessor(PostProcessor):
    """anomalib's post-processor with the image threshold at a false-alarm rate on normal validation images.

    Args:
        false_alarm_rate (float): Share of good images allowed to raise the alarm, in (0, 1). Defaults to ``0.01``.
        **kwargs: anomalib's ``PostProcessor`` arguments (normalisation, threshold matching, sensitivities).
    """

    def __init__(self, false_alarm_rate: float = 0.01, **kwargs: Any) -> None:  # noqa: ANN401  # anomalib's options
        super().__init__(**kwargs)
        self.false_alarm_rate = check_rate(false_alarm_rate)
        self._image_threshold_metric = FalseAlarmThreshold(
            false_alarm_rate=self.false_alarm_rate,
            fields=["pred_score", "gt_label"],
            strict=False,
        )

    @property
    def _checkpoint_config_keys(self) -> tuple[str, ...]:
        """Anomalib's keys and the false-alarm rate."""
        return (*super()._checkpoint_config_keys, "false_alarm_rate")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Set the thresholds and normalisation (anomalib's), then log the image threshold and its rate."""
        super().on_validation_epoch_end(trainer, pl_module)
        if self.enable_thresholding and not torch.isnan(self._image_threshold):
            pl_module.log("false_alarm_threshold", self._image_threshold.clone(), sync_dist=False)
            pl_module.log("false_alarm_rate", self.false_alarm_rate, sync_dist=False)
