# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies and foreground masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_kd_ext.models.aand.synthesis import SyntheticAnomalyGenerator, foreground_masks


def _disc_images(batch_size: int = 2, size: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.3 * size) ** 2).float()
    return (0.1 + 0.7 * disc).expand(batch_size, 3, size, size).clone()


def test_anomalies_only_inside_masks() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 64, 64)
    batch = SyntheticAnomalyGenerator(probability=1.0, foreground="off")(images)
    assert set(batch.masks.unique().tolist()) <= {0.0, 1.0}
    assert (batch.masks.flatten(1).sum(1) > 4).all()
    outside = batch.masks.expand_as(images) == 0
    assert torch.equal(batch.images[outside], images[outside])
    assert not torch.equal(batch.images, images)


def test_probability_zero_leaves_images_clean() -> None:
    images = torch.rand(3, 3, 32, 32)
    batch = SyntheticAnomalyGenerator(probability=0.0, foreground="off")(images)
    assert torch.equal(batch.images, images)
    assert batch.masks.sum() == 0


def test_masks_stay_in_foreground() -> None:
    torch.manual_seed(1)
    images = _disc_images(4)
    batch = SyntheticAnomalyGenerator(probability=1.0, foreground="threshold", foreground_threshold=0.4)(images)
    assert (batch.masks <= batch.foreground).all()
    assert batch.masks.sum() > 0


def test_auto_foreground_finds_object_and_keeps_textures_whole() -> None:
    images = _disc_images(1)
    foreground = foreground_masks(images, mode="auto")
    assert foreground[0, 0, 32, 32] == 1
    assert foreground[0, 0, 0, 0] == 0
    dark_object = 0.9 - 0.8 * (images - 0.1) / 0.7  # bright background, dark disc
    assert foreground_masks(dark_object, mode="auto")[0, 0, 32, 32] == 1
    torch.manual_seed(0)
    stripes = (torch.arange(64) // 4 % 2).float().expand(1, 3, 64, 64)
    assert foreground_masks(stripes, mode="auto").all()


def test_threshold_foreground_invert() -> None:
    images = _disc_images(1)
    normal = foreground_masks(images, mode="threshold", threshold=0.4)
    inverted = foreground_masks(images, mode="threshold", threshold=0.4, invert=True)
    assert torch.equal(normal + inverted, torch.ones_like(normal))


def test_texture_folder(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    generator = SyntheticAnomalyGenerator(texture_dir=str(tmp_path), probability=1.0, foreground="off")
    assert generator.load_textures() == [tmp_path / "t.png"]
    batch = generator(torch.rand(2, 3, 32, 32))
    assert batch.masks.sum() > 0


def test_missing_or_empty_texture_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_textures_here"):
        SyntheticAnomalyGenerator(texture_dir=str(tmp_path / "no_textures_here")).load_textures()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        SyntheticAnomalyGenerator(texture_dir=str(tmp_path)).load_textures()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probability": 1.5}, "probability"),
        ({"blend_range": (0.8, 0.2)}, "blend_range"),
        ({"foreground": "magic"}, "foreground"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticAnomalyGenerator(**kwargs)
