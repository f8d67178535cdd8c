# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies for AAND's stage 1 (DRAEM-style, restricted to the object's foreground).

Each training image receives, with probability ``probability`` (0.8 in the paper's code), a Perlin
noise mask filled with an augmented texture image, blended with texture weight uniform in
``blend_range`` ((0.2, 1]). The mask and texture come from anomalib's
:class:`~anomalib.data.utils.generators.PerlinAnomalyGenerator` (texture images from a local folder,
or its own random patterns when no folder is given). The mask is intersected with a foreground mask
of the image, and redrawn up to ``max_tries`` times until it keeps more than ``min_pixels`` pixels.

Foreground masks (the threshold rules work on a Gaussian-blurred grey image, sigma 8, ITU-R 601 luma):

- ``"off"``: the whole image;
- ``"threshold"``: grey level above ``foreground_threshold`` (below it with ``foreground_invert``);
- ``"disc"``: a centred disc of radius ``int(0.45 * H)``; ``"box"``: a centred box of half size
  ``int(0.35 * H)`` x ``int(0.35 * W)`` (the reference's shapes);
- ``"auto"`` (our reading, no per-category table): Otsu's threshold, the side that covers most of the
  image border is background; when neither side dominates the border (textures), the whole image;
- ``"reference"``: the AAND code's rule of the category (:data:`REFERENCE_RULES`, MVTec AD, VisA and
  MVTec 3D), ``"auto"`` for any other dataset (see :func:`reference_rule`).

The reference computes its masks once on the full-size training files; here they are computed on the
model-sized image, so the same sigma 8 blurs relatively more (a 900 px bottle is resized to 256 px first).

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
from kornia.filters import get_gaussian_kernel1d
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import Normalize
from torchvision.transforms.v2.functional import rgb_to_grayscale

from anomalib_kd_ext.models.components.anomaly_map import autocast_enabled, autocast_off, reflect_blur_matrix

from .perlin import BatchedPerlinGenerator, TextureBank, to_device

ForegroundMode = Literal["off", "threshold", "auto", "disc", "box", "reference"]
FOREGROUND_MODES = ("off", "threshold", "auto", "disc", "box", "reference")
FOREGROUND_SIGMA = 8.0
# Share of border pixels one side of the Otsu split must hold to be called background.
BORDER_DOMINANCE = 0.75


class ForegroundRule(NamedTuple):
    """One foreground rule: a mode of :func:`foreground_masks` and, for ``"threshold"``, its grey level and side."""

    mode: ForegroundMode
    threshold: float = 0.0
    invert: bool = False


def _grey(level: int, invert: bool = False) -> ForegroundRule:
    """The reference's ``cv2.threshold(blurred, level, 255, THRESH_BINARY)`` (``255 -`` it when ``invert``)."""
    return ForegroundRule("threshold", level / 255, invert)


def _family(rules: dict[ForegroundRule, tuple[str, ...]]) -> dict[str, ForegroundRule]:
    return {category: rule for rule, categories in rules.items() for category in categories}


# The AAND code's per-category foreground rules (its scripts/fore_extractor.py). MVTec AD's cable: the reference
# lists it as "cabel", so no branch matches and its loop saves the mask it computed last, that of the category
# before it in its class list (bottle's disc) for every cable image; the published cable numbers were therefore
# trained with the disc, which is what we give cable. MVTec 3D's foam and tire get a centred box in the code (the
# specification's "whole image" does not match it; the code produced the numbers).
REFERENCE_RULES: dict[str, dict[str, ForegroundRule]] = {
    "MVTecAD": _family(
        {
            _grey(0): ("carpet", "grid", "leather", "tile", "wood", "transistor"),
            _grey(150, invert=True): ("capsule", "screw", "zipper"),
            _grey(50): ("hazelnut", "metal_nut", "pill", "toothbrush"),
            ForegroundRule("disc"): ("bottle", "cable"),
        },
    ),
    "Visa": _family(
        {
            _grey(150): ("candle", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1"),
            _grey(100): ("pcb2", "pcb3", "pipe_fryum"),
            _grey(50): ("pcb4",),
            _grey(100, invert=True): ("capsules",),
        },
    ),
    "MVTec3D": _family(
        {
            _grey(50): ("bagel", "cable_gland", "carrot", "cookie", "dowel", "peach", "potato", "rope"),
            ForegroundRule("box"): ("foam", "tire"),
        },
    ),
}


def reference_rule(datamodule: object) -> ForegroundRule:
    """The reference's rule for an anomalib MVTecAD / Visa / MVTec3D datamodule's category, else ``"auto"``.

    Matched on the datamodule's class (or a subclass of it), so a user's ``Folder`` named "bottle" gets ``"auto"``.
    """
    from anomalib.data import MVTec3D, MVTecAD, Visa

    for family, datamodule_class in (("MVTecAD", MVTecAD), ("Visa", Visa), ("MVTec3D", MVTec3D)):
        if isinstance(datamodule, datamodule_class):
            return REFERENCE_RULES[family].get(str(getattr(datamodule, "category", "")), ForegroundRule("auto"))
    return ForegroundRule("auto")


def find_normalize(transform: nn.Module | None) -> Normalize | None:
    """Return the ``Normalize`` step of a (possibly composed) transform, if any."""
    if isinstance(transform, Normalize):
        return transform
    for child in getattr(transform, "transforms", []):
        found = find_normalize(child)
        if found is not None:
            return found
    return None


def _statistics(normalize: Normalize, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.as_tensor(normalize.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return mean, std


def synthesis_seed(seed: int, rank: int) -> int:
    """Seed of the synthesis stream of process ``rank`` in a run seeded with ``seed``: other for every rank."""
    return (seed * 1_000_003 + 0x9E3779B97F4A7C15 * (rank + 1)) % 2**63


class SyntheticBatch(NamedTuple):
    """Images with synthetic anomalies, their masks, and the foreground masks of the clean images."""

    images: torch.Tensor  # (N, C, H, W), same range as the input
    masks: torch.Tensor  # (N, 1, H, W), 1 on synthetic anomalies
    foreground: torch.Tensor  # (N, 1, H, W), 1 on the foreground


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding, (N, 1, H, W) -> (N, 1, H, W), as two matrix products.

    Radius ``4 sigma``, at most one less than the smaller side (reflect padding needs it). A 65-tap kernel (sigma 8)
    as a convolution of one channel is slow on CPUs; the banded matrices give the same result up to float rounding.
    """
    height, width = images.shape[-2:]
    radius = min(int(4.0 * sigma + 0.5), height - 1, width - 1)
    taps = get_gaussian_kernel1d(2 * radius + 1, sigma, device=images.device, dtype=images.dtype).flatten()
    return reflect_blur_matrix(height, taps).transpose(0, 1) @ images @ reflect_blur_matrix(width, taps)


def otsu_thresholds(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold of each row of values in [0, 1], (N, P) -> (N,), bin centres of a ``bins``-bin histogram.

    The histogram is counted with ``scatter_add_`` rather than ``torch.histc``, which has no deterministic CUDA
    kernel; the bins are ``histc``'s, ``[k / bins, (k + 1) / bins)``, the last one closed.
    """
    index = (values.float().clamp(0, 1) * bins).long().clamp_max(bins - 1)
    counts = torch.zeros(values.shape[0], bins, dtype=torch.float32, device=values.device)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float32))
    probability = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    centres = (torch.arange(bins, dtype=torch.float32, device=values.device) + 0.5) / bins
    weight_low = probability.cumsum(1)
    mean_low = (probability * centres).cumsum(1)
    total_mean = mean_low[:, -1:]
    between = (total_mean * weight_low - mean_low) ** 2 / (weight_low * (1 - weight_low)).clamp_min(1e-12)
    return centres[between.argmax(dim=1)]


def foreground_masks(
    images: torch.Tensor,
    mode: ForegroundMode = "auto",
    threshold: float = 0.2,
    invert: bool = False,
) -> torch.Tensor:
    """Foreground masks (N, 1, H, W) of images (N, C, H, W) with values in [0, 1]."""
    batch_size, channels, height, width = images.shape
    if mode == "off":
        return images.new_ones(batch_size, 1, height, width)
    if mode in {"disc", "box"}:
        rows = torch.arange(height, device=images.device)[:, None] - height // 2
        columns = torch.arange(width, device=images.device)[None, :] - width // 2
        if mode == "disc":
            shape = rows**2 + columns**2 <= int(0.45 * height) ** 2
        else:
            shape = (rows.abs() <= int(0.35 * height)) & (columns.abs() <= int(0.35 * width))
        return shape.to(images.dtype).expand(batch_size, 1, height, width).clone()
    grey_input = images.float()
    luma = rgb_to_grayscale(grey_input) if channels == 3 else grey_input.mean(dim=1, keepdim=True)
    grey = _gaussian_blur(luma, FOREGROUND_SIGMA)
    if mode == "threshold":
        foreground = grey < threshold if invert else grey > threshold
        return foreground.to(images.dtype)
    above = grey > otsu_thresholds(grey.flatten(1)).view(-1, 1, 1, 1)
    rim = above[:, 0]
    border = torch.cat([rim[:, 0], rim[:, -1], rim[:, :, 0], rim[:, :, -1]], dim=1).float().mean(dim=1)
    border = border.view(-1, 1, 1, 1)
    whole = torch.ones_like(above)
    object_side = torch.where(border <= 1 - BORDER_DOMINANCE, above, whole)  # neither side dominates: whole image
    foreground = torch.where(border >= BORDER_DOMINANCE, ~above, object_side)
    return foreground.to(images.dtype)


class SyntheticAnomalyGenerator(nn.Module):
    """Draw synthetic anomalies on a batch of clean images with values in [0, 1].

    Args:
        texture_dir (str | Path | None): Folder of texture images (searched recursively), e.g. DTD's
            ``images/``. ``None`` uses anomalib's built-in Perlin patterns. Defaults to ``None``.
        probability (float): Share of images that receive an anomaly. Defaults to ``0.8``.
        blend_range (tuple[float, float]): Range of the texture weight. Defaults to ``(0.2, 1.0)``.
        foreground (ForegroundMode): One of :data:`FOREGROUND_MODES`; ``"reference"`` is resolved to the
            category's rule by :meth:`use_rule` before training (``"auto"`` until then). Defaults to ``"auto"``.
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
        self.perlin = BatchedPerlinGenerator(max_tries=max_tries, min_pixels=min_pixels)
        self.probability = probability
        self.blend_range = (low, high)
        self.foreground = foreground
        self.foreground_threshold = foreground_threshold
        self.foreground_invert = foreground_invert
        fallback = "auto" if foreground == "reference" else foreground
        self.rule = ForegroundRule(fallback, foreground_threshold, foreground_invert)

    @property
    def generator(self) -> torch.Generator:
        """The host random stream of the synthesis (seed it with :meth:`seed`; its state resumes a run)."""
        return self.perlin.generator

    @property
    def seeded(self) -> bool:
        """Whether the stream was seeded (by :meth:`seed` or from a checkpoint) rather than from torch's global seed."""
        return self.perlin.seeded

    def seed(self, seed: int) -> None:
        """Seed the synthesis' own random stream, e.g. with a different seed on each distributed rank."""
        self.perlin.seed(seed)

    def use_rule(self, rule: ForegroundRule) -> None:
        """Draw foreground masks with ``rule`` (the category's reference rule, resolved by the model at fit start)."""
        self.rule = rule

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
            self.perlin.bank = TextureBank(textures)
        return self.textures

    @torch.no_grad()
    def forward(self, images: torch.Tensor, normalize: Normalize | None = None) -> SyntheticBatch:
        """Return the images with anomalies, the anomaly masks and the foreground masks.

        Args:
            images (torch.Tensor): Images in [0, 1], or normalised by ``normalize``, (N, C, H, W).
            normalize (Normalize | None): The pre-processor's normalisation: undone before synthesis (which works
                on [0, 1] images) and applied again to the result. Defaults to ``None``.

        The synthesis computes in float32 with autocast off, whatever the precision of the images or of the training
        step (masks and noise of a half-precision pass would differ); images come back in their own dtype and the
        masks as float32.
        """
        if images.dtype != torch.float32 or autocast_enabled(images.device.type):
            with autocast_off(images.device.type):
                synthetic = self(images.float(), normalize=normalize)
            return synthetic._replace(images=synthetic.images.to(images.dtype))
        if normalize is not None:
            mean, std = _statistics(normalize, images)
            synthetic = self(images * std + mean)
            return synthetic._replace(images=(synthetic.images - mean) / std)
        batch_size, _, height, width = images.shape
        foreground = foreground_masks(images, self.rule.mode, self.rule.threshold, self.rule.invert)
        self.load_textures()
        generator = self.perlin.host_generator()
        low, high = self.blend_range
        anomalous = (torch.rand(batch_size, generator=generator) < self.probability).nonzero().squeeze(1)
        weights = low + (high - low) * torch.rand(batch_size, generator=generator)
        augmented = images.clone()
        masks = images.new_zeros(batch_size, 1, height, width)
        if anomalous.numel():  # host-side indices: no read from the device
            rows = to_device(anomalous, images.device)
            image, region = images.index_select(0, rows), foreground.index_select(0, rows)
            sources, mask = self.perlin(len(anomalous), height, width, images.device, regions=region)
            weight = to_device(weights[anomalous], images.device).view(-1, 1, 1, 1)
            # image * (1 - mask) + mask * (weight * sources + (1 - weight) * image), in one pass
            blended = torch.lerp(image, sources, mask * weight)
            augmented.index_copy_(0, rows, blended)
            masks.index_copy_(0, rows, mask)
        return SyntheticBatch(images=augmented, masks=masks, foreground=foreground)
