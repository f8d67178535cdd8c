# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Checkpoints that are complete or absent, on any local disk, with a short error when the disk is full.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction: fsspec puts the bytes in a temporary file in
the *system* temporary folder (``tempfile.mkstemp()``) and moves it into place when the transaction commits. When
the run folder is on another file system than ``/tmp`` (a data disk, a network share, a container volume), that move
is a copy: a full disk, a read-only remount or ``kill -9`` during the copy leaves a half-written ``model.ckpt`` at
the checkpoint's path, which a rerun with ``--ckpt_path`` then fails to load (measured with a 2 MB tmpfs run folder:
``OSError: [Errno 28] No space left on device: '/tmp/tmp…' -> '…/weights/lightning/model.ckpt'`` and a truncated
``model.ckpt`` left behind).

:class:`AtomicCheckpointIO` writes the temporary file next to the checkpoint, flushes it to the disk and renames it
over the old one (``os.replace``, atomic within a file system). A failed write removes the temporary file and
raises :class:`CheckpointWriteError`, a short ``OSError`` that names the path and the fix; the previous checkpoint
is left as it was. Remote paths (``s3://`` ...) go to Lightning's own implementation.

:class:`AtomicCheckpoints` is the callback that puts it in place when a fit starts, unless the trainer was given a
checkpoint IO of its own. (A public way to do this without a callback: ``Trainer(plugins=[AtomicCheckpointIO()])``.
The upstream fix would be fsspec creating its temporary file beside the target.)

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> AtomicCheckpointIO().save_checkpoint({"epoch": 1}, folder / "model.ckpt")
    >>> torch.load(folder / "model.ckpt", weights_only=True)
    {'epoch': 1}
"""

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from anomalib.engine.plugins import AnomalibCheckpointIO
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the path, the reason and the fix."""

    show_briefly = True  # an uncaught one is printed as its message alone (see ``show_uncaught_briefly``)


class AtomicCheckpointIO(AnomalibCheckpointIO):
    """anomalib's ``AnomalibCheckpointIO`` whose local saves are written beside their target and renamed into place.

    Loading is anomalib's (Lightning's ``TorchCheckpointIO`` with anomalib's safe globals).
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` completely or not at all; the old file stays until the new one is whole.

        Raises:
            CheckpointWriteError: The file could not be written (full or read-only disk, ...); ``path`` is unchanged.
        """
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        temporary = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temporary = Path(name)
            os.chmod(handle, 0o666 & ~_umask())  # mkstemp's 0600 -> the mode a plain open() would give  # noqa: PTH101
            with os.fdopen(handle, "wb") as file:
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(target)
            temporary = None
        except OSError as error:
            previous = "the previous checkpoint there is unchanged" if target.is_file() else "no checkpoint was written"
            reason = error.strerror or str(error)
            msg = (
                f"Could not write the checkpoint '{target}' ({reason}): free space on that disk or choose another "
                f"run folder (--default_root_dir); {previous}."
            )
            raise CheckpointWriteError(error.errno, msg) from error
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)


class AtomicCheckpoints(Callback):
    """Make a fit save its checkpoints with :class:`AtomicCheckpointIO`.

    Only Lightning's and anomalib's default checkpoint IO are replaced (anomalib's safe globals carried over); a
    checkpoint IO of the user's own (``Trainer(plugins=...)``) is kept as it is.
    """

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Swap the default checkpoint IO for the atomic one before anything is saved."""
        del pl_module, stage  # not used
        strategy = trainer.strategy
        current = strategy.checkpoint_io
        if type(current) in {TorchCheckpointIO, AnomalibCheckpointIO}:
            strategy.checkpoint_io = AtomicCheckpointIO(getattr(current, "extra_safe_globals", None))
