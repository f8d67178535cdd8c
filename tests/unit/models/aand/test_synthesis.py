# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies and foreground masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_kd_ext.models.aand.synthesis import (
    REFERENCE_RULES,
    SyntheticAnomalyGenerator,
    foreground_masks,
    reference_rule,
)


def _disc_images(batch_size: int = 2, size: int = 64) -> torch.Tensor:
    """A batch of grey images of a bright disc on a dark background."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.3 * size) ** 2).float()
    return (0.1 + 0.7 * disc).expand(batch_size, 3, size, size).clone()


def test_anomalies_only_inside_masks(device: torch.device) -> None:
    """Synthetic anomalies change the images only inside their binary masks, on every device."""
    torch.manual_seed(0)
    images = torch.rand(4, 3, 64, 64, device=device)
    batch = SyntheticAnomalyGenerator(probability=1.0, foreground="off")(images)
    assert set(batch.masks.unique().tolist()) <= {0.0, 1.0}
    assert (batch.masks.flatten(1).sum(1) > 4).all()
    outside = batch.masks.expand_as(images) == 0
    assert torch.equal(batch.images[outside], images[outside])
    assert not torch.equal(batch.images, images)


def test_probability_zero_leaves_images_clean() -> None:
    """With probability 0 the images are unchanged and the masks empty."""
    images = torch.rand(3, 3, 32, 32)
    batch = SyntheticAnomalyGenerator(probability=0.0, foreground="off")(images)
    assert torch.equal(batch.images, images)
    assert batch.masks.sum() == 0


def test_masks_stay_in_foreground(device: torch.device) -> None:
    """Anomaly masks lie within the threshold foreground."""
    torch.manual_seed(1)
    images = _disc_images(4).to(device)
    batch = SyntheticAnomalyGenerator(probability=1.0, foreground="threshold", foreground_threshold=0.4)(images)
    assert (batch.masks <= batch.foreground).all()
    assert batch.masks.sum() > 0


def test_auto_foreground_finds_object_and_keeps_textures_whole(device: torch.device) -> None:
    """Auto foreground finds bright and dark objects and keeps a texture whole."""
    images = _disc_images(1).to(device)
    foreground = foreground_masks(images, mode="auto")
    assert foreground[0, 0, 32, 32] == 1
    assert foreground[0, 0, 0, 0] == 0
    dark_object = 0.9 - 0.8 * (images - 0.1) / 0.7  # bright background, dark disc
    assert foreground_masks(dark_object, mode="auto")[0, 0, 32, 32] == 1
    torch.manual_seed(0)
    stripes = (torch.arange(64, device=device) // 4 % 2).float().expand(1, 3, 64, 64)
    assert foreground_masks(stripes, mode="auto").all()


def test_threshold_foreground_invert() -> None:
    """The inverted threshold foreground is the complement of the normal one."""
    images = _disc_images(1)
    normal = foreground_masks(images, mode="threshold", threshold=0.4)
    inverted = foreground_masks(images, mode="threshold", threshold=0.4, invert=True)
    assert torch.equal(normal + inverted, torch.ones_like(normal))


def test_texture_folder(tmp_path: Path) -> None:
    """Textures are found in the given folder and used to synthesise anomalies."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    generator = SyntheticAnomalyGenerator(texture_dir=str(tmp_path), probability=1.0, foreground="off")
    assert generator.load_textures() == [tmp_path / "t.png"]
    batch = generator(torch.rand(2, 3, 32, 32))
    assert batch.masks.sum() > 0


def test_missing_or_empty_texture_folder(tmp_path: Path) -> None:
    """A missing or image-less texture folder raises FileNotFoundError."""
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
    """Each invalid generator argument raises a ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        SyntheticAnomalyGenerator(**kwargs)


def _object_on_background(object_level: float, background_level: float, size: int = 128) -> torch.Tensor:
    """(1, 3, size, size): a centred square of grey ``object_level`` on ``background_level``."""
    image = torch.full((1, 3, size, size), background_level)
    image[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = object_level
    return image


@pytest.mark.parametrize(
    ("family", "category", "object_level", "background_level"),
    [
        ("MVTecAD", "hazelnut", 120 / 255, 20 / 255),  # > 50: bright object on dark background
        ("MVTecAD", "capsule", 100 / 255, 230 / 255),  # > 150 inv: dark object on bright background
        ("Visa", "candle", 200 / 255, 90 / 255),  # > 150
        ("Visa", "pcb2", 160 / 255, 60 / 255),  # > 100
        ("Visa", "capsules", 40 / 255, 200 / 255),  # > 100 inv
        ("MVTec3D", "bagel", 120 / 255, 10 / 255),  # > 50
    ],
)
def test_reference_threshold_rules_find_the_object(
    family: str,
    category: str,
    object_level: float,
    background_level: float,
) -> None:
    """Each reference threshold rule marks the object centre as foreground, the corner as background."""
    rule = REFERENCE_RULES[family][category]
    assert rule.mode == "threshold"
    foreground = foreground_masks(_object_on_background(object_level, background_level), *rule)
    assert foreground[0, 0, 64, 64] == 1  # object centre
    assert foreground[0, 0, 2, 2] == 0  # background corner


def test_reference_texture_rule_keeps_everything_but_black() -> None:
    """The texture rule (threshold 0) keeps every pixel of a non-black image."""
    rule = REFERENCE_RULES["MVTecAD"]["carpet"]
    assert rule == ("threshold", 0.0, False)
    assert foreground_masks(torch.rand(1, 3, 64, 64) * 0.5 + 0.1, *rule).all()


def test_reference_shapes() -> None:
    """The reference disc and box rules give fixed-size shapes independent of the content."""
    images = torch.rand(2, 3, 100, 100)
    disc = foreground_masks(images, *REFERENCE_RULES["MVTecAD"]["bottle"])
    assert REFERENCE_RULES["MVTecAD"]["cable"].mode == "disc"  # the reference's effective rule (see REFERENCE_RULES)
    assert disc[0, 0, 50, 50] == 1
    assert disc[0, 0, 50, 50 + 45] == 1  # radius int(0.45 * 100) = 45
    assert disc[0, 0, 50, 50 + 46] == 0
    assert disc[0, 0, 0, 0] == 0
    assert torch.equal(disc[0], disc[1])  # independent of the content
    box = foreground_masks(images, *REFERENCE_RULES["MVTec3D"]["foam"])
    assert box[0, 0, 50 - 35, 50 + 35] == 1
    assert box[0, 0, 50 - 36, 50] == 0
    assert box[0, 0, 50, 50 + 36] == 0


def test_reference_rule_follows_the_datamodule(tmp_path: Path) -> None:
    """The reference rule follows the datamodule's family and category, else falls back to auto."""
    from anomalib.data import Folder, MVTecAD, Visa

    assert reference_rule(MVTecAD(root=tmp_path, category="bottle")).mode == "disc"
    assert reference_rule(MVTecAD(root=tmp_path, category="screw")) == ("threshold", 150 / 255, True)
    assert reference_rule(Visa(root=tmp_path, category="pcb4")) == ("threshold", 50 / 255, False)
    assert reference_rule(MVTecAD(root=tmp_path, category="unknown_category")).mode == "auto"
    folder = Folder(name="bottle", root=tmp_path, normal_dir="good")  # a user's folder is not MVTec's bottle
    assert reference_rule(folder).mode == "auto"
    assert reference_rule(None).mode == "auto"


def test_generator_uses_the_resolved_rule() -> None:
    """The generator uses auto until given a rule, then keeps the masks in that rule's foreground."""
    generator = SyntheticAnomalyGenerator(probability=1.0, foreground="reference")
    assert generator.rule.mode == "auto"  # until the model resolves the category's rule at fit start
    generator.use_rule(REFERENCE_RULES["MVTecAD"]["bottle"])
    batch = generator(torch.rand(2, 3, 64, 64))
    assert batch.foreground[0, 0, 0, 0] == 0
    assert batch.foreground[0, 0, 32, 32] == 1
    assert (batch.masks <= batch.foreground).all()


@pytest.mark.parametrize("shape", [(2, 1, 96, 80), (2, 1, 20, 40)])
def test_foreground_blur_equals_the_reference_convolution(shape: tuple[int, ...]) -> None:
    """The matrix blur is the reference's separable sigma-8 Gaussian with reflected borders (radius cut to fit)."""
    from torch.nn import functional as F  # noqa: N812

    from anomalib_kd_ext.models.aand.synthesis import FOREGROUND_SIGMA, _gaussian_blur

    images = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    sigma = FOREGROUND_SIGMA
    radius = min(int(4 * sigma + 0.5), shape[-1] - 1, shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    rows = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    expected = F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    torch.testing.assert_close(_gaussian_blur(images, sigma), expected, atol=1e-5, rtol=0)
