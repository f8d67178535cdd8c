# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Argument validation: every invalid constructor value fails at construction with the argument's name (hypothesis)."""

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.models.components import check_range

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NEGATIVE = st.floats(max_value=0, exclude_max=True, allow_nan=False) | NON_FINITE
NON_POSITIVE = st.floats(max_value=0, allow_nan=False) | NON_FINITE
OUTSIDE_UNIT = st.floats(max_value=0, exclude_max=True) | st.floats(min_value=1, exclude_min=True) | NON_FINITE

AAND_INVALID = {
    "amplification_epochs": st.integers(max_value=-1) | st.floats(0.1, 10.5).filter(lambda x: x != int(x)),
    "distillation_epochs": st.integers(max_value=0),
    "num_memory_items": st.integers(max_value=0),
    "k_hard": st.integers(max_value=0),
    "gate_temperature": NON_POSITIVE,
    "margin": NEGATIVE,
    "amplification_weight": NEGATIVE,
    "focal_alpha": OUTSIDE_UNIT,
    "focal_gamma": NEGATIVE,
    "mask_threshold": OUTSIDE_UNIT,
    "anomaly_probability": OUTSIDE_UNIT,
    "foreground_threshold": OUTSIDE_UNIT,
    "learning_rate": NON_POSITIVE,
    "lr_decay": NON_POSITIVE | st.floats(min_value=1, exclude_min=True),
    "lr_milestones": st.lists(OUTSIDE_UNIT.filter(lambda x: not 0 < x <= 1), min_size=1, max_size=3),
    "betas": st.tuples(st.floats(min_value=1) | NEGATIVE, st.floats(0, 0.99)),
    "anomaly_map_mode": st.text(max_size=8).filter(lambda x: x not in {"add", "multiply"}),
}
DSKD_INVALID = {
    "learning_rate": NON_POSITIVE,
    "anomaly_map_mode": st.text(max_size=8).filter(lambda x: x not in {"add", "multiply"}),
    "df_source": st.text(max_size=8).filter(lambda x: x not in {"student", "teacher", "both"}),
    "student_weights": st.tuples(NEGATIVE, st.floats(0, 2)),
    "betas": st.tuples(st.floats(0, 0.99), st.floats(min_value=1) | NEGATIVE),
}


@pytest.mark.parametrize(("model", "name"), [(AAND, n) for n in AAND_INVALID] + [(DSKD, n) for n in DSKD_INVALID])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_invalid_argument_fails_at_construction(model: type, name: str, data: st.DataObject, resnet18: dict) -> None:
    """Every invalid value of a checked argument raises a ValueError naming the argument."""
    value = data.draw((AAND_INVALID if model is AAND else DSKD_INVALID)[name], label=name)
    with pytest.raises(ValueError, match=re.escape(name)):
        model(**resnet18, **{name: value})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_hard": 17}, r"k_hard=17 exceeds the 16 positions"),  # 64x64 input, stride 16: 4x4 positions
        ({"layers": ["layer1", "layer9"]}, "layer9"),
    ],
)
def test_arguments_that_depend_on_the_network(kwargs: dict, match: str, resnet18: dict) -> None:
    """Arguments checked against the network raise ValueError at construction."""
    pre_processor = AAND.configure_pre_processor(image_size=(64, 64))
    with pytest.raises(ValueError, match=match):
        AAND(**{**resnet18, **kwargs}, pre_processor=pre_processor)


@given(value=st.floats(allow_nan=False, allow_infinity=False), low=st.floats(-10, 10), width=st.floats(0, 10))
def test_check_range_accepts_exactly_the_closed_interval(value: float, low: float, width: float) -> None:
    """Values inside the closed interval pass check_range; all others raise ValueError."""
    high = low + width
    inside = low <= value <= high
    if inside:
        check_range("x", value, low=low, high=high)
    else:
        with pytest.raises(ValueError, match="x must be in"):
            check_range("x", value, low=low, high=high)


def test_check_range_refuses_booleans_and_strings() -> None:
    """A boolean for an integer and a string for a number raise ValueError."""
    with pytest.raises(ValueError, match="an integer"):
        check_range("epochs", value=True, low=0, integer=True)
    with pytest.raises(ValueError, match="a number"):
        check_range("rate", "0.1", low=0)
