# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Resume an interrupted training run where it stopped, random streams included.

Lightning restores the weights, the optimisers, the learning-rate schedules and the epoch from a checkpoint
(``--ckpt_path``), but not the random number generators: after ``seed_everything`` a resumed run would shuffle the
training images and draw AAND's synthetic anomalies from the start of the seeded streams again, and end with other
weights than an uninterrupted run. :func:`save_random_state` saves the generators of Python, NumPy and
torch (CPU and the process's GPU), and the model's own ``torch.Generator`` s (a submodule's ``generator``
attribute, e.g. AAND's anomaly synthesis), in every checkpoint and restores them when the checkpoint is loaded to
resume a fit, so that a resumed run ends with the same weights as an uninterrupted one with the same seed.

The states are stored as plain tensors and lists, so checkpoints still load with ``torch.load(weights_only=True)``.
In a multi-process run every rank's states are gathered into the checkpoint (rank 0 writes it) and each rank gets
its own back; resumed with another number of processes, every rank continues from rank 0's.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.runtime.resume import capture_random_state, restore_random_state
    >>> state = capture_random_state()
    >>> first = torch.rand(3)
    >>> restore_random_state(state)
    >>> torch.equal(torch.rand(3), first)
    True
"""

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "kd_random_state"


def module_generators(module: torch.nn.Module) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` s that submodules of ``module`` keep as a ``generator`` attribute, by module name."""
    return {
        name: generator
        for name, submodule in module.named_modules()
        if isinstance(generator := vars(submodule).get("generator"), torch.Generator)
    }


def capture_random_state(module: torch.nn.Module | None = None) -> dict[str, Any]:
    """States of Python's, NumPy's and torch's global generators (and ``module`` 's own), ``weights_only``-safe."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()  # noqa: NPY002  # the legacy global generator is what user code seeds
    key_array = np.asarray(keys, dtype=np.int64)  # the legacy form's keys (typed str | ndarray by numpy)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(key_array), position, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's GPU: under DDP each rank has its own
    if module is not None:
        state["modules"] = {name: generator.get_state() for name, generator in module_generators(module).items()}
    return state


def restore_random_state(state: dict[str, Any], module: torch.nn.Module | None = None) -> None:
    """Set the global generators (and ``module`` 's own) to a state from :func:`capture_random_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    legacy = (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    np.random.set_state(legacy)  # noqa: NPY002  # the legacy global generator is what user code seeds
    torch.set_rng_state(state["torch"])
    cuda_state = state.get("cuda")
    if cuda_state is not None and torch.cuda.is_available():
        if isinstance(cuda_state, list):  # checkpoints before per-rank states held every GPU's state
            device = torch.cuda.current_device()
            cuda_state = cuda_state[device] if len(cuda_state) > device else None
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state)
    if module is not None:
        generators = module_generators(module)
        for name, generator_state in state.get("modules", {}).items():
            if name in generators:
                generators[name].set_state(generator_state)
                submodule = module.get_submodule(name)
                if hasattr(submodule, "seeded"):
                    submodule.seeded = True  # restored: not to be seeded again at fit start


def _world(trainer: Trainer | None) -> tuple[int, int]:
    """(rank, number of processes) of a fit, (0, 1) outside of one."""
    if trainer is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 0, 1
    return trainer.global_rank, trainer.world_size


def save_random_state(trainer: Trainer | None, module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Add every rank's generator states (global and ``module`` 's own) to ``checkpoint``; all ranks take part."""
    state = capture_random_state(module)
    _, world_size = _world(trainer)
    states: list[Any] = [state]
    if world_size > 1:
        states = [None] * world_size
        torch.distributed.all_gather_object(states, state)
    checkpoint[CHECKPOINT_KEY] = {"per_rank": states}


def load_random_state(trainer: Trainer | None, module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Restore this rank's generator states from ``checkpoint`` when it is loaded to resume a fit.

    Only while the trainer is fitting (``--ckpt_path`` / ``Engine.fit(ckpt_path=...)``): that is after the model is
    built and before the first training batch is drawn. Loading a checkpoint for testing, prediction or export
    leaves the generators alone.
    """
    if CHECKPOINT_KEY not in checkpoint or trainer is None or trainer.state.fn != TrainerFn.FITTING:
        return
    saved = checkpoint[CHECKPOINT_KEY]
    states = saved.get("per_rank", [saved])
    rank, world_size = _world(trainer)
    if len(states) != world_size:
        logger.warning(
            "The checkpoint holds the random states of %d processes, this run has %d: every process continues "
            "from rank 0's.",
            len(states),
            world_size,
        )
    restore_random_state(states[rank] if len(states) == world_size else states[0], module)
    if len(states) != world_size:  # every rank holds rank 0's streams now: the models' own ones split per rank
        for generator in module_generators(module).values():
            base = int(torch.randint(2**62, (1,), generator=generator))
            generator.manual_seed((base + 0x9E3779B97F4A7C15 * (rank + 1)) % 2**63)
