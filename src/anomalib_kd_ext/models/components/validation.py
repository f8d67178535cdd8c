# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Constructor argument checks: a bad value fails at construction, with the argument's name and its valid range.

Example:
    >>> check_range("learning_rate", 0.005, low=0, low_open=True)
    >>> check_range("focal_alpha", 1.5, low=0, high=1)
    Traceback (most recent call last):
    ...
    ValueError: focal_alpha must be in [0, 1], got 1.5.
"""

import math
from collections.abc import Collection, Sequence
from numbers import Integral, Real


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a (finite, optionally integer) number within the bounds.

    Raises:
        ValueError: If ``value`` is not a number, not an integer where one is needed, NaN/inf, or out of range.
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real) or not math.isfinite(value):
        msg = f"{name} must be {kind} {_describe(low, high, low_open, high_open)}, got {value!r}."
        raise ValueError(msg)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        msg = f"{name} must be {_describe(low, high, low_open, high_open)}, got {value!r}."
        raise ValueError(msg)


def check_choice(name: str, value: object, choices: Collection) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        msg = f"{name} must be one of {sorted(choices)}, got {value!r}."
        raise ValueError(msg)


def check_fractions(name: str, values: Sequence[float]) -> None:
    """Raise ``ValueError`` unless ``values`` are non-decreasing fractions in (0, 1] (e.g. learning-rate milestones)."""
    for value in values:
        check_range(f"every value of {name}", value, low=0, high=1, low_open=True)
    if list(values) != sorted(values):
        msg = f"{name} must be in increasing order, got {list(values)}."
        raise ValueError(msg)
