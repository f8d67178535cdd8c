# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Decode and resize each image once: an in-memory cache of anomalib dataset items, as a Lightning callback.

anomalib's datasets read every image from its file and resize it to the model's input size each time an item is
asked for, i.e. every epoch. For the full-size files of MVTec AD (900-1024 px PNGs) that decoding costs more than a
small model's training step on a CPU. :class:`ImageCache` keeps each item the dataset produced (image and mask,
after the dataset's augmentations, which anomalib sets to the model's ``Resize``) in memory and serves it again:

- **Bounded.** Items are float32 (0.75 MiB at 256 px, 3 MiB at 512 px): by default the cache stops at a quarter
  of the memory (the machine's, or a container's limit where lower; shared among the DDP processes of a machine),
  read at run time, and decodes the items beyond it as anomalib does; the log gives the limit and the number of
  cached items. ``max_gigabytes`` sets another limit, ``None`` none.
- **Same tensors.** An item is served from the cache only when the dataset's augmentations are deterministic
  (``Resize``, ``Normalize``, ``CenterCrop``, ``Grayscale``, dtype conversions and their ``Compose``); a subset with
  random augmentations is left uncached, with a warning, so nothing the model sees changes.
- **Never stale.** The key of an item is its image and mask path, each file's size and modification time, the
  label, the task and the dataset's augmentations (which hold the model's input size). A changed file, image size
  or pre-processor gives a new key; a rerun decodes again.
- **Filled up front.** When a fit, validation, test or predict starts, the missing items of the datamodule's
  subsets are decoded in a thread pool in the main process, so dataloader workers (forked after it) serve from the
  filled cache too. With the cache filled, ``num_workers=0`` is the fastest choice on a small CPU; on a GPU keep
  the workers, so that batches are collated while the GPU trains.

Switch it on with the callback, from Python, the CLI or YAML (see the README, "Training fast on a CPU"):

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_kd_ext.data import ImageCache
    >>> engine = Engine(callbacks=[ImageCache()])  # doctest: +SKIP

    On the command line: ``anomalib train --model AAND --data MVTecAD --data.num_workers 0
    --trainer.callbacks+=anomalib_kd_ext.data.ImageCache``; in YAML, a ``trainer.callbacks`` entry with
    ``class_path: anomalib_kd_ext.data.ImageCache``.
"""

import copy
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import Dataset
from torchvision.transforms import v2

logger = logging.getLogger(__name__)

# Transforms whose output depends on their input only: an item they produced can be served again.
DETERMINISTIC_TRANSFORMS = (
    v2.Compose,
    v2.Resize,
    v2.Normalize,
    v2.CenterCrop,
    v2.Grayscale,
    v2.ToDtype,
    v2.ToImage,
    v2.ToPureTensor,
    v2.Identity,
)
SUBSETS = ("train_data", "val_data", "test_data")


def is_deterministic(transform: object) -> bool:
    """Whether ``transform`` (``None``, a torchvision v2 transform or a ``Compose`` of them) has no randomness."""
    if transform is None:
        return True
    if not isinstance(transform, DETERMINISTIC_TRANSFORMS):
        return False
    return all(is_deterministic(child) for child in getattr(transform, "transforms", []))


def _file_state(path: object) -> tuple[str, int, int] | None:
    """(path, size, modification time in ns) of a file, ``None`` for no path."""
    if not isinstance(path, str | Path) or not str(path):
        return None
    stat = Path(path).stat()
    return str(path), stat.st_size, stat.st_mtime_ns


class CachedDataset(Dataset):
    """An anomalib dataset whose items come from a shared in-memory store after their first read.

    Attributes not defined here (``samples``, ``task``, ``collate_fn``, ``augmentations``, ...) are read from and
    written to the wrapped dataset, so anomalib's datamodule keeps working on it (its ``setup`` assigns the
    augmentations again on every call).

    Args:
        dataset (Dataset): anomalib dataset (``AnomalibDataset``: ``samples`` with ``image_path``).
        store (dict): Item store, shared by every dataset of one :class:`ImageCache`.
    """

    dataset: Any  # an anomalib dataset (``samples``, items by index)
    store: dict

    def __init__(self, dataset: Dataset, store: dict) -> None:
        object.__setattr__(self, "dataset", dataset)
        object.__setattr__(self, "store", store)

    def __len__(self) -> int:
        """Number of items of the wrapped dataset."""
        return len(self.dataset)

    def __getattr__(self, name: str) -> object:
        """Attributes not defined here are read from the wrapped dataset."""
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value: object) -> None:
        """Attributes are set on the wrapped dataset."""
        setattr(self.dataset, name, value)

    @property
    def cacheable(self) -> bool:
        """Items can be served again: the dataset's augmentations are deterministic."""
        return is_deterministic(getattr(self.dataset, "augmentations", None))

    def key(self, index: int) -> tuple:
        """Everything the item at ``index`` depends on (files, label, task, augmentations)."""
        sample = self.dataset.samples.iloc[index]
        return (
            _file_state(sample.image_path),
            _file_state(getattr(sample, "mask_path", None)),
            int(sample.label_index) if getattr(sample, "label_index", None) is not None else None,
            str(getattr(self.dataset, "task", None)),
            repr(getattr(self.dataset, "augmentations", None)),
        )

    def __getitem__(self, index: int) -> object:
        """The item at ``index``: read once and then served from the store, unless the dataset is not cacheable."""
        if not self.cacheable:
            return self.dataset[index]
        key = self.key(index)
        item = self.store.get(key)
        if item is None:
            item = self.dataset[index]
            self.store[key] = item
        return copy.copy(item)  # a new item object around the cached tensors (collation never writes into them)

    def missing(self) -> list[int]:
        """Indices whose items are not in the store yet."""
        return [index for index in range(len(self)) if self.key(index) not in self.store]


def item_bytes(item: object) -> int:
    """Bytes of the tensors of one dataset item."""
    return sum(value.nbytes for value in vars(item).values() if isinstance(value, torch.Tensor))


class ImageCache(Callback):
    """Keep every decoded and resized dataset item in memory (see the module docstring).

    Args:
        num_threads (int | None): Threads that decode the missing items when a stage starts; ``None`` uses the
            number of CPUs this process may run on. Defaults to ``None``.
        max_gigabytes (float | Literal["auto"] | None): Stop adding items once the cache holds this much (the rest
            is decoded as usual, every time). ``"auto"``: a quarter of this machine's memory, read when the cache is
            built (:func:`default_limit_gigabytes`). ``None`` means no limit. Defaults to ``"auto"``.
    """

    def __init__(self, num_threads: int | None = None, max_gigabytes: float | Literal["auto"] | None = "auto") -> None:
        if num_threads is not None and num_threads < 1:
            msg = f"num_threads must be at least 1, got {num_threads}."
            raise ValueError(msg)
        if max_gigabytes == "auto":
            max_gigabytes = default_limit_gigabytes()
        elif max_gigabytes is not None and (isinstance(max_gigabytes, str) or max_gigabytes <= 0):
            msg = f"max_gigabytes must be positive, 'auto' or None (no limit), got {max_gigabytes!r}."
            raise ValueError(msg)
        self.num_threads = num_threads
        self.max_gigabytes = max_gigabytes
        self.store: _BoundedStore = _BoundedStore(None if max_gigabytes is None else int(max_gigabytes * 2**30))

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors held in the cache."""
        return self.store.nbytes

    def wrap(self, datamodule: object) -> list[CachedDataset]:
        """Wrap the datamodule's subsets (once) and return the wrapped ones."""
        wrapped = []
        for name in SUBSETS:
            subset = getattr(datamodule, name, None)
            if subset is None or not hasattr(subset, "samples"):
                continue
            if not isinstance(subset, CachedDataset) or subset.store is not self.store:
                subset = CachedDataset(subset.dataset if isinstance(subset, CachedDataset) else subset, self.store)
                setattr(datamodule, name, subset)
            wrapped.append(subset)
        return wrapped

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """After anomalib set up the datamodule (and its augmentations), wrap its subsets and fill the cache."""
        del pl_module, stage
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None:
            return
        for subset in self.wrap(datamodule):
            if not subset.cacheable:
                logger.warning(
                    "ImageCache: %s has random augmentations (%s); its images are decoded every time.",
                    type(subset.dataset).__name__,
                    subset.augmentations,
                )
                continue
            self.fill(subset)
        limit = "no limit" if self.max_gigabytes is None else f"limit {self.max_gigabytes:.1f} GB"
        logger.info("ImageCache holds %d items, %.1f MB (%s).", len(self.store), self.nbytes / 2**20, limit)

    def fill(self, subset: CachedDataset) -> None:
        """Decode the items of ``subset`` that the cache does not hold yet, in parallel threads."""
        missing = subset.missing()
        if not missing:
            return
        threads = self.num_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(subset.__getitem__, missing):
                if self.store.full:
                    break


CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")  # a container's memory limit (cgroup v2)


def default_limit_gigabytes(share: float = 0.25) -> float:
    """A ``share`` of the memory this process may use, in GB, read at run time, split among the local processes.

    The memory is the machine's physical memory, or a container's limit where that is lower (cgroup v2's
    ``memory.max``); under DDP each process on the machine (``LOCAL_WORLD_SIZE``) keeps its own cache and gets an
    equal part. 32 GB are assumed where the physical memory cannot be read.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        total = 32 * 2**30
    try:
        limit = CGROUP_LIMIT.read_text().strip()
    except OSError:
        limit = "max"
    if limit.isdigit():
        total = min(total, int(limit))
    processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    return share * total / processes / 2**30


class _BoundedStore(dict):
    """A dict of dataset items that counts their bytes and refuses new items beyond a limit."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.nbytes = 0
        self.full = False

    def __setitem__(self, key: tuple, item: object) -> None:
        size = item_bytes(item)
        if self.limit is not None and self.nbytes + size > self.limit:
            if not self.full:
                logger.warning(
                    "ImageCache is full (%.1f GB); further images are decoded every time.",
                    self.limit / 2**30,
                )
            self.full = True
            return
        if key not in self:
            self.nbytes += size
        super().__setitem__(key, item)
