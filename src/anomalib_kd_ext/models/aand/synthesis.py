# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies for AAND's stage 1 (DRAEM-style, restricted to the object's foreground).

Each training image receives, with probability ``probability`` (0.8 in the paper's code), a Perlin
noise mask filled with an augmented texture image, blended with texture weight uniform in
``blend_range`` ((0.2, 1]). The mask and texture come from anomalib's
:class:`~anomalib.data.utils.generators.PerlinAnomalyGenerator` (texture images from a local folder,
or its own random patterns when no folder is given). The mask is intersected with a foreground mask
of the image, and redrawn up to ``max_tries`` times until it keeps more than ``min_pixels`` pixels.

Foreground masks (computed on a Gaussian-blurred grey image, sigma 8):

- ``"off"``: the whole image;
- ``"threshold"``: grey level above ``foreground_threshold`` (below it with ``foreground_invert``),
  the rule of the AAND code, which uses per-category thresholds;
- ``"auto"`` (our reading, no per-category table): Otsu's threshold, the side that covers most of the
  image border is background; when neither side dominates the border (textures), the whole image.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.aand.synthesis import SyntheticAnomalyGenerator
    >>> generator = SyntheticAnomalyGenerator(foreground="off")
    >>> batch = generator(torch.rand(4, 3, 64, 64))
    >>> batch.images.shape, batch.masks.shape
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 1, 64, 64]))
"""

from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from anomalib.data.utils.generators import PerlinAnomalyGenerator
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS

ForegroundMode = Literal["off", "threshold", "auto"]
FOREGROUND_MODES = ("off", "threshold", "auto")
FOREGROUND_SIGMA = 8.0
# Share of border pixels one side of the Otsu split must hold to be called background.
BORDER_DOMINANCE = 0.75


class SyntheticBatch(NamedTuple):
    """Images with synthetic anomalies, their masks, and the foreground masks of the clean images."""

    images: torch.Tensor  # (N, C, H, W), same range as the input
    masks: torch.Tensor  # (N, 1, H, W), 1 on synthetic anomalies
    foreground: torch.Tensor  # (N, 1, H, W), 1 on the foreground


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding, (N, 1, H, W) -> (N, 1, H, W)."""
    radius = min(int(4.0 * sigma + 0.5), images.shape[-1] - 1, images.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def _otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]."""
    histogram = torch.histc(values.float(), bins=bins, min=0.0, max=1.0)
    probability = histogram / histogram.sum().clamp_min(1)
    centres = (torch.arange(bins, dtype=torch.float32, device=values.device) + 0.5) / bins
    weight_low = probability.cumsum(0)
    mean_low = (probability * centres).cumsum(0)
    total_mean = mean_low[-1]
    between = (total_mean * weight_low - mean_low) ** 2 / (weight_low * (1 - weight_low)).clamp_min(1e-12)
    return float(centres[int(between.argmax())])


def foreground_masks(
    images: torch.Tensor,
    mode: ForegroundMode = "auto",
    threshold: float = 0.2,
    invert: bool = False,
) -> torch.Tensor:
    """Foreground masks (N, 1, H, W) of images (N, C, H, W) with values in [0, 1]."""
    batch_size, _, height, width = images.shape
    if mode == "off":
        return images.new_ones(batch_size, 1, height, width)
    grey = _gaussian_blur(images.mean(dim=1, keepdim=True), FOREGROUND_SIGMA)
    if mode == "threshold":
        foreground = grey < threshold if invert else grey > threshold
        return foreground.to(images.dtype)
    masks = []
    for image in grey:
        above = image > _otsu_threshold(image)
        border = torch.cat([above[0, 0], above[0, -1], above[0, :, 0], above[0, :, -1]]).float().mean()
        if border >= BORDER_DOMINANCE:
            masks.append(~above)
        elif border <= 1 - BORDER_DOMINANCE:
            masks.append(above)
        else:
            masks.append(torch.ones_like(above))
    return torch.stack(masks).to(images.dtype)


class SyntheticAnomalyGenerator(nn.Module):
    """Draw synthetic anomalies on a batch of clean images with values in [0, 1].

    Args:
        texture_dir (str | Path | None): Folder of texture images (searched recursively), e.g. DTD's
            ``images/``. ``None`` uses anomalib's built-in Perlin patterns. Defaults to ``None``.
        probability (float): Share of images that receive an anomaly. Defaults to ``0.8``.
        blend_range (tuple[float, float]): Range of the texture weight. Defaults to ``(0.2, 1.0)``.
        foreground (ForegroundMode): ``"off"``, ``"threshold"`` or ``"auto"``. Defaults to ``"auto"``.
        foreground_threshold (float): Grey level in [0, 1] for ``"threshold"``. Defaults to ``0.2``.
        foreground_invert (bool): Foreground is darker than the threshold. Defaults to ``False``.
        max_tries (int): Redraws of a mask that loses its pixels to the foreground mask. Defaults to ``10``.
        min_pixels (int): A mask must keep more than this many pixels. Defaults to ``4``.

    Raises:
        ValueError: Invalid probability, blend range or foreground mode.

    The texture folder is read on first use (see :meth:`load_textures`), so that a model can be
    rebuilt from a checkpoint on a machine that does not have the training textures.
    """

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        probability: float = 0.8,
        blend_range: tuple[float, float] = (0.2, 1.0),
        foreground: ForegroundMode = "auto",
        foreground_threshold: float = 0.2,
        foreground_invert: bool = False,
        max_tries: int = 10,
        min_pixels: int = 4,
    ) -> None:
        super().__init__()
        if not 0 <= probability <= 1:
            msg = f"anomaly probability must lie in [0, 1], got {probability}."
            raise ValueError(msg)
        low, high = blend_range
        if not 0 <= low <= high <= 1:
            msg = f"blend_range must satisfy 0 <= low <= high <= 1, got {blend_range}."
            raise ValueError(msg)
        if foreground not in FOREGROUND_MODES:
            msg = f"foreground must be one of {FOREGROUND_MODES}, got {foreground!r}."
            raise ValueError(msg)
        self.texture_dir = None if texture_dir is None else Path(texture_dir).expanduser()
        self.textures: list[Path] | None = None if texture_dir is not None else []
        self.perlin = PerlinAnomalyGenerator(probability=1.0, blend_factor=blend_range)
        self.probability = probability
        self.blend_range = (low, high)
        self.foreground = foreground
        self.foreground_threshold = foreground_threshold
        self.foreground_invert = foreground_invert
        self.max_tries = max_tries
        self.min_pixels = min_pixels

    def load_textures(self) -> list[Path]:
        """List the texture images (once); called before training so that a bad folder fails early."""
        if self.textures is None:
            if self.texture_dir is None or not self.texture_dir.is_dir():
                msg = (
                    f"Texture folder not found: '{self.texture_dir}'. Pass a folder of texture images (e.g. DTD's "
                    "images/) as `texture_dir`, or leave it unset to use anomalib's built-in Perlin patterns."
                )
                raise FileNotFoundError(msg)
            textures = sorted(p for p in self.texture_dir.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
            if not textures:
                msg = f"Texture folder '{self.texture_dir}' holds no images ({', '.join(IMG_EXTENSIONS)})."
                raise FileNotFoundError(msg)
            self.textures = textures
        return self.textures

    def _perturbation(self, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        textures = self.load_textures()
        texture = textures[int(torch.randint(len(textures), (1,)))] if textures else None
        try:
            perturbation, mask = self.perlin.generate_perturbation(height, width, device, texture)
        except RuntimeError as exc:
            msg = f"Could not use texture image '{texture}' ({exc}); remove or replace it in the texture folder."
            raise RuntimeError(msg) from exc
        return perturbation.permute(2, 0, 1), mask.permute(2, 0, 1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> SyntheticBatch:
        """Return the images with anomalies, the anomaly masks and the foreground masks."""
        batch_size, _, height, width = images.shape
        foreground = foreground_masks(images, self.foreground, self.foreground_threshold, self.foreground_invert)
        augmented = images.clone()
        masks = images.new_zeros(batch_size, 1, height, width)
        low, high = self.blend_range
        for index in range(batch_size):
            if float(torch.rand(1)) >= self.probability:
                continue
            for _ in range(self.max_tries):
                perturbation, mask = self._perturbation(height, width, images.device)
                mask = mask * foreground[index]
                if mask.sum() > self.min_pixels:
                    break
            weight = low + (high - low) * float(torch.rand(1))
            image = images[index]
            augmented[index] = image * (1 - mask) + mask * (weight * perturbation + (1 - weight) * image)
            masks[index] = mask
        return SyntheticBatch(images=augmented, masks=masks, foreground=foreground)
