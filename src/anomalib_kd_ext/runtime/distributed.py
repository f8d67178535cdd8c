# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Distributed data-parallel training of models that train part of their parameters at a time.

AAND trains its RAA modules in stage 1 and its student in stage 2: in every step one of the two groups gets no
gradient. PyTorch's ``DistributedDataParallel`` stops with "parameters that were not used in producing the loss"
unless it is told to look for them (``find_unused_parameters=True``). :func:`find_unused_parameters_in_ddp` turns
that on for Lightning's DDP strategies when the user did not choose, so that ``--trainer.devices 2`` works as is.
"""

import logging

from lightning.pytorch import Trainer
from lightning.pytorch.strategies import DDPStrategy

from .adapters import ddp_kwargs as strategy_ddp_kwargs

logger = logging.getLogger(__name__)


def find_unused_parameters_in_ddp(trainer: Trainer | None, model_name: str) -> None:
    """Let DDP skip parameters without gradient; call in ``setup``, before the strategy wraps the model.

    Raises:
        ValueError: If the strategy was explicitly built with ``find_unused_parameters=False``.
    """
    strategy = getattr(trainer, "strategy", None)
    if not isinstance(strategy, DDPStrategy):
        return
    ddp_kwargs = strategy_ddp_kwargs(strategy)
    if ddp_kwargs.get("find_unused_parameters") is False:
        msg = (
            f"{model_name} trains part of its parameters at a time, which DistributedDataParallel only allows with "
            "find_unused_parameters=True: use strategy='ddp_find_unused_parameters_true' "
            "(CLI: --trainer.strategy ddp_find_unused_parameters_true)."
        )
        raise ValueError(msg)
    if "find_unused_parameters" not in ddp_kwargs:
        logger.info("%s: DDP set to find_unused_parameters=True (one training stage at a time).", model_name)
        ddp_kwargs["find_unused_parameters"] = True
