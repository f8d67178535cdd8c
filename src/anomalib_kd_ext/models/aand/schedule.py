# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND's two-stage schedule: which stage an epoch belongs to, and each stage's learning-rate milestones.

Example:
    >>> schedule = StageSchedule(amplification_epochs=100, distillation_epochs=120)
    >>> schedule.stages, schedule.max_epochs
    (('amplification', 'distillation'), 220)
    >>> schedule.stage_at(99), schedule.stage_at(100), schedule.index_at(100)
    ('amplification', 'distillation', 1)
    >>> schedule.milestones("distillation", (0.8, 0.9))
    [96, 108]
"""

from collections.abc import Sequence
from dataclasses import dataclass

AMPLIFICATION = "amplification"
DISTILLATION = "distillation"


def step_milestones(epochs: int, fractions: Sequence[float]) -> list[int]:
    """Epochs (counted within a stage) after which the learning rate is multiplied by the decay.

    As the AAND reference, which hands the float milestones ``fraction * epochs`` to PyTorch's ``MultiStepLR``: that
    scheduler compares them with whole epoch numbers, so a milestone fires only where ``fraction * epochs`` is a
    whole number (at 100 or 120 epochs both of (0.8, 0.9) do; at 3 epochs neither does). Each epoch decays at most
    once, so a short stage is never decayed twice at the same epoch.

    Example:
        >>> step_milestones(120, (0.8, 0.9))
        [96, 108]
        >>> step_milestones(3, (0.8, 0.9))
        []
    """
    return sorted(
        {int(milestone) for milestone in (epochs * fraction for fraction in fractions) if milestone.is_integer()},
    )


@dataclass(frozen=True)
class StageSchedule:
    """Stage 1 (anomaly amplification) for ``amplification_epochs``, then stage 2 (normality distillation).

    Args:
        amplification_epochs (int): Length of stage 1.
        distillation_epochs (int): Length of stage 2.
        amplification (bool): Whether there is a stage 1 (``False``: RAA off, plain reverse distillation; its
            epochs count as zero). Defaults to ``True``.
    """

    amplification_epochs: int
    distillation_epochs: int
    amplification: bool = True

    def __post_init__(self) -> None:
        """Count stage 1 as zero epochs when there is no stage 1."""
        if not self.amplification:
            object.__setattr__(self, "amplification_epochs", 0)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages, in order; each has its own optimiser and learning-rate schedule."""
        return (AMPLIFICATION, DISTILLATION) if self.amplification else (DISTILLATION,)

    @property
    def max_epochs(self) -> int:
        """Epochs of the whole run."""
        return self.amplification_epochs + self.distillation_epochs

    def epochs(self, stage: str) -> int:
        """Length of ``stage``."""
        return self.amplification_epochs if stage == AMPLIFICATION else self.distillation_epochs

    def stage_at(self, epoch: int) -> str:
        """The stage that trains in ``epoch`` (counted from 0 over the whole run)."""
        return AMPLIFICATION if epoch < self.amplification_epochs else DISTILLATION

    def index_at(self, epoch: int) -> int:
        """Index of the optimiser and scheduler of the stage of ``epoch``."""
        return self.stages.index(self.stage_at(epoch))

    def milestones(self, stage: str, fractions: Sequence[float]) -> list[int]:
        """Learning-rate milestones of ``stage``, counted within the stage (see :func:`step_milestones`)."""
        return step_milestones(self.epochs(stage), fractions)
