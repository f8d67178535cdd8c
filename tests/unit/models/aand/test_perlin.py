# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The batched Perlin generator against anomalib's per-image one: values of each piece, statistics of the whole."""

# ruff: noqa: SLF001  # the texture bank's file reader is replaced to count and fake reads

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data.utils.generators import PerlinAnomalyGenerator
from anomalib.data.utils.generators.perlin import generate_perlin_noise
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF  # noqa: N812

from anomalib_kd_ext.models.aand import perlin
from anomalib_kd_ext.models.aand.synthesis import SyntheticAnomalyGenerator, foreground_masks


@pytest.mark.parametrize(("height", "width", "scale"), [(64, 64, (1, 32)), (48, 100, (4, 8)), (256, 256, (32, 2))])
def test_noise_equals_anomalib(height: int, width: int, scale: tuple[int, int]) -> None:
    """Perlin noise from the same gradient angles equals anomalib's ``generate_perlin_noise``."""
    torch.manual_seed(3)
    reference = generate_perlin_noise(height, width, scale=scale, device=torch.device("cpu"))
    torch.manual_seed(3)
    angles = torch.zeros(1, perlin.GRID, perlin.GRID)
    angles[0, : scale[0] + 1, : scale[1] + 1] = 2 * math.pi * torch.rand(scale[0] + 1, scale[1] + 1)
    noise = perlin.perlin_noise(torch.tensor([scale]), angles, height, width)[0]
    torch.testing.assert_close(noise, reference, atol=1e-6, rtol=0)


def test_transforms_equal_torchvision() -> None:
    """Each batched transform with per-image parameters equals torchvision's on each image."""
    images = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    factors = torch.tensor([0.5, 1.3, 2.0])
    cases = [
        (perlin.adjust_contrast, TF.adjust_contrast, factors),
        (perlin.adjust_brightness, TF.adjust_brightness, factors),
        (perlin.adjust_saturation, TF.adjust_saturation, factors),
        (perlin.adjust_sharpness, TF.adjust_sharpness, factors),
        (perlin.adjust_hue, TF.adjust_hue, torch.tensor([-0.13, 0.02, 0.1])),
        (perlin.solarize, TF.solarize, torch.tensor([0.2, 0.4, 0.5])),
        (perlin.posterize, lambda image, bits: TF.posterize(image, int(bits)), torch.tensor([4.0, 5.0, 7.0])),
        (
            perlin.rotate,
            lambda image, angle: TF.rotate(image, float(angle), interpolation=InterpolationMode.BILINEAR),
            torch.tensor([-80.0, 10.0, 45.0]),
        ),
        (
            lambda x, v: perlin.shear_x(x, v, mode="bilinear"),
            lambda image, s: TF.affine(
                image,
                angle=0.0,
                translate=[0, 0],
                scale=1.0,
                shear=[math.degrees(math.atan(float(s))), 0.0],
                interpolation=InterpolationMode.BILINEAR,
                center=[0, 0],
            ),
            torch.tensor([-0.3, 0.1, 0.2]),
        ),
    ]
    for batched, reference, values in cases:
        expected = torch.stack([reference(image, value) for image, value in zip(images, values, strict=True)])
        torch.testing.assert_close(batched(images, values), expected, atol=5e-5, rtol=0)


def test_cpu_rounds_equal_all_at_once() -> None:
    """The CPU's round-by-round redraws give the masks and sources of the accelerators' all-at-once path."""
    regions = foreground_masks(torch.rand(6, 3, 64, 64), mode="disc")
    regions[:3, :, :, :40] = 0  # smaller regions: more redraws
    outputs = []
    for all_at_once in (False, True):
        generator = perlin.BatchedPerlinGenerator().seed(7)
        outputs.append(generator(6, 64, 64, torch.device("cpu"), regions=regions, all_at_once=all_at_once))
    assert torch.equal(outputs[0][1], outputs[1][1])
    torch.testing.assert_close(outputs[0][0], outputs[1][0])


def _reference_masks(count: int, size: int, foreground: torch.Tensor, probability: float) -> list[float]:
    """Mask areas drawn as AAND's synthesis did before batching: anomalib's per-image generator, 10 redraws."""
    generator = PerlinAnomalyGenerator(probability=1.0, blend_factor=(0.2, 1.0))
    areas = []
    for _ in range(count):
        if float(torch.rand(1)) >= probability:
            areas.append(0.0)
            continue
        for _ in range(10):
            _, mask = generator.generate_perturbation(size, size, torch.device("cpu"), None)
            mask = mask.permute(2, 0, 1) * foreground
            if mask.sum() > 4:
                break
        areas.append(float(mask.mean()))
    return areas


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.mark.parametrize("mode", ["off", "disc"])
def test_statistics_match_the_per_image_generator(mode: str) -> None:
    """Over 1,200 draws: anomalous share, mask-area distribution and blend weights match the per-image generator."""
    count, size = 1200, 48
    torch.manual_seed(0)
    foreground = foreground_masks(torch.zeros(1, 3, size, size), mode=mode)[0]
    reference = np.array(_reference_masks(count, size, foreground, probability=0.8))
    synthesis = SyntheticAnomalyGenerator(foreground=mode)
    synthesis.seed(1)
    images = torch.full((count // 4, 3, size, size), 0.5)
    batches = [synthesis(images) for _ in range(4)]
    areas = torch.cat([batch.masks.flatten(1).mean(dim=1) for batch in batches]).numpy()
    # anomalous share: 0.8 each; binomial standard deviation of a share of 1,200 draws is 0.012
    assert abs((areas > 0).mean() - 0.8) < 0.045
    assert abs((reference > 0).mean() - 0.8) < 0.045
    # mask areas of the anomalous draws: same distribution (KS critical value at alpha 0.001 is about 0.08)
    assert _ks_statistic(areas[areas > 0], reference[reference > 0]) < 0.08
    quantiles = np.quantile(areas[areas > 0], [0.1, 0.5, 0.9])
    expected = np.quantile(reference[reference > 0], [0.1, 0.5, 0.9])
    np.testing.assert_allclose(quantiles, expected, rtol=0.25, atol=0.01)
    # every mask lies in the foreground and keeps more than 4 pixels when the foreground allows it
    assert all((batch.masks <= batch.foreground).all() for batch in batches)
    anomalous = areas[areas > 0] * size * size
    assert (anomalous > 4).mean() > 0.99
    # blend weights: uniform on (0.2, 1], read back from a black image blended with a white texture
    weights = _blend_weights(count)
    assert _ks_statistic(weights, np.random.default_rng(0).uniform(0.2, 1.0, 20_000)) < 0.08


def _blend_weights(count: int) -> np.ndarray:
    """Blend weights of ``count`` anomalies: black images, plain white texture, no augmentation."""
    synthesis = SyntheticAnomalyGenerator(probability=1.0, foreground="off")
    synthesis.seed(2)
    synthesis.perlin.augmentation.operations = tuple(
        (lambda *_: None) for _ in synthesis.perlin.augmentation.operations
    )
    synthesis.perlin.bank = perlin.TextureBank([Path("white")])
    synthesis.perlin.bank._read = lambda path, height, width: torch.full((3, height, width), 255, dtype=torch.uint8)  # type: ignore[method-assign]  # noqa: ARG005
    batch = synthesis(torch.zeros(count, 3, 16, 16))
    inside = batch.masks.flatten(1) > 0
    blended = batch.images[:, 0].flatten(1)
    return np.array([float(row[mask].mean()) for row, mask in zip(blended, inside, strict=True) if mask.any()])


def test_texture_bank_decodes_each_file_once(tmp_path: Path) -> None:
    """A texture is read from disk the first time it is drawn only."""
    for index in range(3):
        value = np.full((20, 30, 3), 80 * index, dtype=np.uint8)
        Image.fromarray(value).save(tmp_path / f"t{index}.png")
    bank = perlin.TextureBank(sorted(tmp_path.glob("*.png")))
    reads = []
    original = bank._read
    bank._read = lambda path, height, width: reads.append(path) or original(path, height, width)  # type: ignore[method-assign]
    first = bank.take(torch.tensor([2, 0, 2]), 16, 16, torch.device("cpu"))
    bank.take(torch.tensor([0, 2, 2, 0]), 16, 16, torch.device("cpu"))
    assert sorted(path.name for path in reads) == ["t0.png", "t2.png"]
    assert first.shape == (3, 3, 16, 16)
    torch.testing.assert_close(first[0], torch.full((3, 16, 16), 160 / 255))


def test_synthesis_stream_is_its_own() -> None:
    """Seeded, the synthesis repeats itself whatever the global stream; other seeds draw other masks."""
    images = torch.rand(8, 3, 32, 32)
    masks = []
    for seed, global_seed in ((5, 0), (5, 1), (6, 0)):
        torch.manual_seed(global_seed)
        synthesis = SyntheticAnomalyGenerator(foreground="off")
        synthesis.seed(seed)
        masks.append(synthesis(images).masks)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_images_and_autocast_draw_the_float32_anomalies(dtype: torch.dtype) -> None:
    """Half-precision images (16-true / bf16-true) and a mixed-precision step get the masks of a float32 pass."""
    images = torch.rand(6, 3, 64, 64)
    results = []
    for run in ("fp32", "half", "autocast"):
        synthesis = SyntheticAnomalyGenerator(foreground="auto")
        synthesis.seed(3)
        if run == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                results.append(synthesis(images))
        else:
            results.append(synthesis(images.to(dtype) if run == "half" else images))
    reference, half, autocast = results
    assert half.images.dtype == dtype
    assert half.masks.dtype == autocast.masks.dtype == torch.float32
    assert torch.equal(autocast.masks, reference.masks)
    assert torch.equal(autocast.images, reference.images)
    # from half-precision pixels the foreground and masks may differ where a value rounds across a threshold only
    assert (half.masks != reference.masks).float().mean() < 0.01


def test_bank_holds_drawn_textures_only_and_is_not_pickled(tmp_path: Path) -> None:
    """The bank grows with the textures drawn; a pickled generator carries the file list, not the images."""
    import pickle  # noqa: S403  # round trip of our own object

    for index in range(6):
        Image.fromarray(np.full((20, 30, 3), 40 * index, dtype=np.uint8)).save(tmp_path / f"t{index}.png")
    generator = perlin.BatchedPerlinGenerator(textures=sorted(tmp_path.glob("*.png"))).seed(0)
    size = len(pickle.dumps(generator))
    generator.bank.take(torch.tensor([4, 1, 4]), 64, 64, torch.device("cpu"))
    assert generator.bank.images is not None
    assert generator.bank.images.shape[0] == 2
    assert len(pickle.dumps(generator)) < size + 1000
    restored = pickle.loads(pickle.dumps(generator))  # noqa: S301  # our own object
    assert restored.bank.images is None
    assert len(restored.bank) == 6
