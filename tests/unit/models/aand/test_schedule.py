# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND's two-stage schedule as a unit: stage of each epoch, optimiser index, lengths and milestones."""

import pytest

from anomalib_kd_ext.models.aand.schedule import AMPLIFICATION, DISTILLATION, StageSchedule, step_milestones


def test_two_stages_split_the_run_at_the_amplification_length() -> None:
    """Epochs 0..A-1 are stage 1 (optimiser 0), epochs A..A+D-1 stage 2 (optimiser 1)."""
    schedule = StageSchedule(amplification_epochs=3, distillation_epochs=2)
    assert schedule.stages == (AMPLIFICATION, DISTILLATION)
    assert schedule.max_epochs == 5
    assert [schedule.stage_at(epoch) for epoch in range(5)] == [AMPLIFICATION] * 3 + [DISTILLATION] * 2
    assert [schedule.index_at(epoch) for epoch in range(5)] == [0, 0, 0, 1, 1]
    assert (schedule.epochs(AMPLIFICATION), schedule.epochs(DISTILLATION)) == (3, 2)


def test_without_amplification_every_epoch_is_distillation() -> None:
    """RAA off: stage 1 counts zero epochs whatever was asked, and the only optimiser is index 0."""
    schedule = StageSchedule(amplification_epochs=100, distillation_epochs=4, amplification=False)
    assert schedule.stages == (DISTILLATION,)
    assert schedule.max_epochs == 4
    assert schedule.epochs(AMPLIFICATION) == 0
    assert {schedule.stage_at(epoch) for epoch in range(4)} == {DISTILLATION}
    assert {schedule.index_at(epoch) for epoch in range(4)} == {0}


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [(100, [80, 90]), (120, [96, 108]), (3, []), (10, [8, 9]), (15, [12]), (30, [24, 27])],
)
def test_milestones_fire_only_on_whole_epochs_as_the_reference(epochs: int, expected: list[int]) -> None:
    """Float milestones 0.8E and 0.9E fire only where they are whole numbers (the reference's MultiStepLR)."""
    assert step_milestones(epochs, (0.8, 0.9)) == expected
    schedule = StageSchedule(amplification_epochs=epochs, distillation_epochs=epochs)
    assert schedule.milestones(AMPLIFICATION, (0.8, 0.9)) == expected
    assert schedule.milestones(DISTILLATION, (0.8, 0.9)) == expected


def test_an_epoch_never_decays_twice() -> None:
    """Two fractions that land on the same whole epoch give one milestone, not a double decay."""
    assert step_milestones(10, (0.5, 0.5, 0.9)) == [5, 9]
