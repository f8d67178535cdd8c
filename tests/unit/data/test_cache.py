# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""ImageCache: the same tensors as anomalib's uncached dataset, never stale, random augmentations left alone."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from PIL import Image
from torchvision.transforms import v2

from anomalib_kd_ext.data import CachedDataset, ImageCache
from anomalib_kd_ext.data.cache import CGROUP_LIMIT, is_deterministic
from helpers import make_mvtec_like


def _datamodule(root: Path, size: int = 32, augmentations: v2.Transform | None = None) -> MVTecAD:
    datamodule = MVTecAD(root=root, category="tiny", num_workers=0, augmentations=augmentations or v2.Resize(size))
    datamodule.setup("fit")
    return datamodule


def test_cached_items_equal_uncached(tmp_path: Path) -> None:
    """Items served from a filled cache equal those read without it; one stored item per training and test image."""
    root = make_mvtec_like(tmp_path)
    plain = _datamodule(root)
    cache = ImageCache(num_threads=2)
    cached = _datamodule(root)
    subsets = cache.wrap(cached)
    for subset in subsets:
        cache.fill(subset)
    assert {type(subset) for subset in subsets} == {CachedDataset}
    assert len(cache.store) == len(plain.train_data) + len(plain.test_data)  # val is the test split: shared items
    assert cache.nbytes > 0
    for name in ("train_data", "test_data"):
        for index in range(len(getattr(plain, name))):
            expected, served = getattr(plain, name)[index], getattr(cached, name)[index]
            assert torch.equal(expected.image, served.image)
            assert (expected.gt_mask is None) == (served.gt_mask is None)
            if expected.gt_mask is not None:
                assert torch.equal(expected.gt_mask, served.gt_mask)
            assert expected.image_path == served.image_path
    batch = next(iter(cached.train_dataloader()))  # anomalib's collation works through the wrapper
    assert batch.image.shape[-2:] == (32, 32)


def test_changed_file_or_size_is_decoded_again(tmp_path: Path) -> None:
    """A rewritten file or new augmentations (written through to the dataset) give a newly decoded item."""
    root = make_mvtec_like(tmp_path)
    cache = ImageCache()
    datamodule = _datamodule(root)
    (train,) = [subset for subset in cache.wrap(datamodule) if subset is datamodule.train_data]
    first = train[0].image.clone()
    path = Path(train.samples.iloc[0].image_path)
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # new mtime even within a tick
    rewritten = train[0].image
    assert not torch.equal(first, rewritten)
    assert torch.allclose(rewritten, torch.ones_like(rewritten))
    train.augmentations = v2.Resize(16)  # as anomalib's setup does when the model's input size changes
    assert train.dataset.augmentations is train.augmentations  # written through to the dataset
    assert train[0].image.shape[-2:] == (16, 16)


def test_random_augmentations_are_not_cached(tmp_path: Path) -> None:
    """Random augmentations make a dataset uncacheable: nothing is stored."""
    root = make_mvtec_like(tmp_path)
    flip = v2.Compose([v2.Resize(32), v2.RandomHorizontalFlip(p=0.5)])
    assert not is_deterministic(flip)
    assert is_deterministic(v2.Compose([v2.Resize(32), v2.Normalize([0.5] * 3, [0.5] * 3)]))
    cache = ImageCache()
    datamodule = _datamodule(root, augmentations=flip)
    for subset in cache.wrap(datamodule):
        cache.fill(subset)
        subset[0]
    assert len(cache.store) == 0


def test_limit_and_arguments(tmp_path: Path) -> None:
    """The store stops at ``max_gigabytes``; non-positive ``num_threads`` and ``max_gigabytes`` are refused."""
    root = make_mvtec_like(tmp_path)
    cache = ImageCache(max_gigabytes=1e-5)  # ~10 kB: one 32 px image (12 kB) does not fit
    datamodule = _datamodule(root)
    for subset in cache.wrap(datamodule):
        cache.fill(subset)
    assert cache.store.full
    assert cache.nbytes <= 1e-5 * 2**30
    with pytest.raises(ValueError, match="num_threads"):
        ImageCache(num_threads=0)
    with pytest.raises(ValueError, match="max_gigabytes"):
        ImageCache(max_gigabytes=0)


def test_engine_fit_with_cache_gives_the_same_weights(tmp_path: Path) -> None:
    """A seeded fit through the Engine with the cache ends with the same weights as without it."""
    from lightning.pytorch import seed_everything

    from anomalib_kd_ext.models import DSKD
    from helpers import fit_on_cpu

    root = make_mvtec_like(tmp_path / "data")
    states = []
    # no cache; the default (a quarter of this machine's memory); a cap that holds a few of the 64 px items only
    for callbacks in ([], [ImageCache()], [ImageCache(max_gigabytes=2e-4)]):
        seed_everything(0)
        model = DSKD(
            backbone="resnet18",
            layers=("layer1", "layer2", "layer3"),
            pre_trained=False,
            pre_processor=DSKD.configure_pre_processor(image_size=(64, 64)),
        )
        datamodule = MVTecAD(root=root, category="tiny", train_batch_size=4, eval_batch_size=4, num_workers=0)
        fit_on_cpu(model, datamodule, tmp_path / f"run{len(states)}", callbacks=callbacks)
        if callbacks:
            assert len(callbacks[0].store) > 0
            assert callbacks[0].nbytes <= callbacks[0].max_gigabytes * 2**30
            assert isinstance(datamodule.train_data, CachedDataset)
        states.append({key: value.clone() for key, value in model.state_dict().items()})
    assert callbacks[0].store.full  # the small cap was reached: the other items were decoded every time
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
        assert torch.equal(states[0][key], states[2][key]), key


def test_default_limit_is_a_quarter_of_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the cache stops at a quarter of the memory (a container's limit where lower); None: no limit."""
    import os

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    if CGROUP_LIMIT.is_file() and CGROUP_LIMIT.read_text().strip().isdigit():
        memory = min(memory, int(CGROUP_LIMIT.read_text()) / 2**30)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert ImageCache().max_gigabytes == pytest.approx(memory / 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two DDP processes on this machine: half each
    assert ImageCache().max_gigabytes == pytest.approx(memory / 8)
    assert ImageCache(max_gigabytes=None).store.limit is None
    with pytest.raises(ValueError, match="'auto' or None"):
        ImageCache(max_gigabytes="all")
