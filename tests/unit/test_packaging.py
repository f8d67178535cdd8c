# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The project's requirements never allow a version the installed anomalib refuses."""

from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
# anomalib states torch and torchvision in its torch extras (cpu, cu126, ...): the cpu extra's bounds.
EXTRA = {"torch": "cpu", "torchvision": "cpu"}


def _ours() -> dict[str, Requirement]:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml")
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {(r := Requirement(line)).name: r for line in dependencies}


def _anomalib(name: str) -> Requirement:
    for line in requires("anomalib") or []:
        requirement = Requirement(line)
        if requirement.name != name:
            continue
        extra, marker = EXTRA.get(name), requirement.marker
        if (marker is None and extra is None) or (marker is not None and marker.evaluate({"extra": extra or ""})):
            return requirement
    pytest.fail(f"anomalib does not require {name}")


def _lowest_allowed(requirement: Requirement) -> Version:
    lowest = [Version(spec.version) for spec in requirement.specifier if spec.operator in {">=", "=="}]
    return max(lowest) if lowest else Version("0")


@pytest.mark.parametrize("name", ["torch", "torchvision", "lightning", "torchmetrics", "jsonargparse"])
def test_lower_bounds_are_anomalibs(name: str) -> None:
    """Our lowest allowed version is at least anomalib's, and every version anomalib excludes is excluded too."""
    ours, theirs = _ours()[name], _anomalib(name)
    assert _lowest_allowed(ours) >= _lowest_allowed(theirs), (str(ours), str(theirs))
    excluded = [Version(spec.version) for spec in theirs.specifier if spec.operator in {"!=", "<"}]
    for version in excluded:
        candidate = version if version >= _lowest_allowed(ours) else None
        if candidate is not None and not theirs.specifier.contains(candidate):
            assert not ours.specifier.contains(candidate), (str(ours), str(theirs), str(candidate))
