# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DDP set-up for models that train part of their parameters at a time."""

from types import SimpleNamespace

import pytest
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from anomalib_kd_ext.runtime.adapters import ddp_kwargs
from anomalib_kd_ext.runtime.distributed import find_unused_parameters_in_ddp


def test_ddp_left_to_choose_gets_find_unused_parameters() -> None:
    """A DDP strategy without the setting gets find_unused_parameters=True."""
    strategy = DDPStrategy()
    find_unused_parameters_in_ddp(SimpleNamespace(strategy=strategy), "AAND")
    assert ddp_kwargs(strategy)["find_unused_parameters"] is True


def test_user_choice_true_is_kept_and_false_is_refused_with_the_fix() -> None:
    """An explicit True is kept unchanged; an explicit False raises a ValueError naming the fix."""
    chosen = DDPStrategy(find_unused_parameters=True, static_graph=False)
    find_unused_parameters_in_ddp(SimpleNamespace(strategy=chosen), "AAND")
    assert ddp_kwargs(chosen) == {"find_unused_parameters": True, "static_graph": False}
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        find_unused_parameters_in_ddp(SimpleNamespace(strategy=DDPStrategy(find_unused_parameters=False)), "AAND")


def test_other_strategies_and_no_trainer_are_left_alone() -> None:
    """Other strategies and a missing trainer pass without error."""
    find_unused_parameters_in_ddp(SimpleNamespace(strategy=SingleDeviceStrategy("cpu")), "AAND")
    find_unused_parameters_in_ddp(None, "AAND")
