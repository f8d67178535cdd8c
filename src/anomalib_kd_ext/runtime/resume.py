# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Resume an interrupted training run where it stopped, random streams included.

Lightning restores the weights, the optimisers, the learning-rate schedules and the epoch from a checkpoint
(``--ckpt_path``), but not the random number generators: after ``seed_everything`` a resumed run would shuffle the
training images and draw AAND's synthetic anomalies from the start of the seeded streams again, and end with other
weights than an uninterrupted run. :class:`ResumableRandomStateMixin` saves the generators of Python, NumPy and
torch (CPU and CUDA) in every checkpoint and restores them when the checkpoint is loaded to resume a fit, so that a
resumed single-process run ends with the same weights as an uninterrupted one with the same seed.

The states are stored as plain tensors and lists, so checkpoints still load with ``torch.load(weights_only=True)``.
In a multi-process run the checkpoint holds rank 0's states; every process then continues from them.

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


def capture_random_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's global generators, as tensors and lists (``weights_only``-safe)."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()  # noqa: NPY002  # the legacy global generator is what user code seeds
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    """Set the global generators to a state from :func:`capture_random_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    legacy = (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    np.random.set_state(legacy)  # noqa: NPY002  # the legacy global generator is what user code seeds
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning(
                "The checkpoint holds the random state of %d GPUs, this machine has %d: GPU streams not restored.",
                len(cuda_states),
                torch.cuda.device_count(),
            )


class ResumableRandomStateMixin:
    """Save the random generators in checkpoints and restore them when a fit resumes from one.

    The states are restored in ``on_load_checkpoint`` only while the trainer is fitting (``--ckpt_path`` /
    ``Engine.fit(ckpt_path=...)``): that is after the model is built and before the first training batch is
    drawn. Loading a checkpoint for testing, prediction or export leaves the generators alone.
    """

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the generators' states to the checkpoint."""
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint[CHECKPOINT_KEY] = capture_random_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the generators' states when the checkpoint is loaded to resume training."""
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        trainer = attached_trainer(self)  # type: ignore[arg-type]
        if CHECKPOINT_KEY in checkpoint and trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            restore_random_state(checkpoint[CHECKPOINT_KEY])


def attached_trainer(module: LightningModule) -> Trainer | None:
    """The ``Trainer`` that ``module`` is attached to, or ``None`` (e.g. in ``load_from_checkpoint``).

    Lightning's public ``LightningModule.trainer`` raises a ``RuntimeError`` when no trainer is attached.
    """
    try:
        return module.trainer
    except RuntimeError:
        return None
