# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""No private API of another library outside the named adapters."""

import subprocess
import sys
from pathlib import Path

import anomalib_kd_ext

PACKAGE = Path(anomalib_kd_ext.__file__).parent
# The one module allowed to touch private attributes of anomalib and Lightning, each access a named adapter.
ADAPTERS = PACKAGE / "runtime" / "adapters.py"


def test_private_member_access_only_in_the_adapters_module() -> None:
    """Ruff's SLF001 (private member access), noqa comments ignored, finds nothing outside runtime/adapters.py."""
    result = subprocess.run(  # noqa: S603  # this interpreter running ruff on the installed package
        [sys.executable, "-m", "ruff", "check", "--select", "SLF001", "--ignore-noqa", "--output-format", "concise"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        check=False,
    )
    hits = [line for line in result.stdout.splitlines() if "SLF001" in line]
    outside = [line for line in hits if not line.startswith(str(ADAPTERS.relative_to(PACKAGE)))]
    assert not outside, outside
    assert hits, "the adapters module should hold the remaining private accesses (found none: is ruff running?)"


def test_no_network_probe_or_global_backend_switch_in_library_code() -> None:
    """No socket use and no matplotlib backend switch anywhere in the package."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "socket" not in text, path
        assert "matplotlib.use(" not in text, path
        assert "mpl.use(" not in text, path
