# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's only use of a private API of another library (Lightning's), as a named adapter.

The adapter says why no public way exists and what upstream change would remove it. Nothing else in the plugin
touches a private attribute of another library (``tests/unit/runtime/test_adapters.py`` checks the source).
"""

from typing import Any

from lightning.pytorch.strategies import DDPStrategy


def ddp_kwargs(strategy: DDPStrategy) -> dict[str, Any]:
    """The keyword arguments that Lightning's DDP strategy will hand to ``DistributedDataParallel`` (mutable).

    Lightning keeps them in ``DDPStrategy._ddp_kwargs`` until it wraps the model and has no public getter or setter;
    a public ``DDPStrategy.ddp_kwargs`` (to be proposed to Lightning) would remove this adapter.
    """
    return strategy._ddp_kwargs  # noqa: SLF001
