# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Perlin-noise anomalies for a whole batch at once, on the images' device.

anomalib's :class:`~anomalib.data.utils.generators.PerlinAnomalyGenerator` (DRAEM) draws one image at a time: a
Python loop over the batch, a texture file decoded per image, and host reads of device scalars (``.item()``,
``float()``) in every draw. :class:`BatchedPerlinGenerator` draws the same distribution for a batch:

- every random number is drawn up front on the host from the generator's own CPU ``torch.Generator`` (a few
  numbers per image), so the device computes without reading anything back;
- Perlin noise with a random power-of-two scale per axis and image (``2 ** randint(0, 6)``), rescaled to
  ``[-1, 1]`` when no value exceeds 0.5, rotated by a uniform angle in ``rotation_range`` (bilinear, zero fill) and
  thresholded at 0.5, for all images in one pass;
- redraws: ``max_tries`` candidate masks per image; an image keeps the first one with more than ``min_pixels``
  pixels inside its ``region`` (the last one if none has). On the CPU, where reading a value back costs nothing,
  candidates are computed round by round for the images still without a mask; on an accelerator all are computed
  at once. Both give the same masks, since the candidates' random numbers are drawn beforehand;
- the anomaly source: a texture image from a :class:`TextureBank` (decoded once, at the masks' size, kept on the
  device), or with no textures the rotated noise itself (``0.25 + 0.5 * noise`` on three channels, as anomalib);
- anomalib's texture augmentation, three distinct transforms in random order out of its ten (contrast, brightness
  with a channel permutation, sharpness, hue and saturation, solarize, posterize, invert, AutoAugment's ImageNet
  policy, equalize, rotation up to 45 degrees), each applied at once to the images that drew it, with a parameter
  per image. Two differences from anomalib: the solarize threshold is drawn per image (anomalib draws it once when
  the transform is built; DRAEM's imgaug draws it per image), and AutoAugment's shear is about the image centre
  plus the translation that puts its origin at the top-left corner, as torchvision's.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.aand.perlin import BatchedPerlinGenerator
    >>> generator = BatchedPerlinGenerator()
    >>> _ = generator.seed(0)
    >>> sources, masks = generator(4, 64, 64, device=torch.device("cpu"))
    >>> sources.shape, masks.shape
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 1, 64, 64]))
"""

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF  # noqa: N812

SCALE_EXPONENTS = 6  # scales 2 ** 0 .. 2 ** 5 per axis, as anomalib's generate_perlin_noise
GRID = 2 ** (SCALE_EXPONENTS - 1) + 1  # gradient lattice side that holds every scale
NUM_AUGMENTATIONS = 3  # anomalib's MultiRandomChoice(num_transforms=3, fixed_num_transforms=True)
PARAMETERS = 6  # random numbers drawn per image and augmentation slot

# AutoAugment's ImageNet policy (torchvision): (operation, probability, magnitude bin) pairs.
AUTOAUGMENT_IMAGENET = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 0), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 0)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 0)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 0), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 0)),
    (("Equalize", 0.0, 0), ("Equalize", 0.8, 0)),
    (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 0)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 0)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 0)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
)


def to_device(values: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Copy host draws to ``device`` without making the host wait for the device.

    A copy from ordinary (pageable) host memory to a GPU synchronises; from pinned memory it is queued like a
    kernel. PyTorch caches pinned blocks, so pinning the few numbers of a batch costs little.
    """
    if device.type not in {"cpu", "meta"} and values.device.type == "cpu":
        values = values.contiguous().pin_memory()  # a strided source would be copied through pageable memory
    return values.to(device, dtype, non_blocking=True)


def _column(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * images + (1 - factor) * other`` in [0, 1], torchvision's ``_blend`` with a factor per image."""
    return torch.lerp(other.expand_as(images), images, _column(factor)).clamp_(0, 1)


def _affine(images: torch.Tensor, matrices: torch.Tensor, mode: str) -> torch.Tensor:
    """Warp images (N, C, H, W) with (N, 2, 3) matrices in normalised coordinates, zero fill.

    The sampling grid is ``F.affine_grid``'s (``align_corners=False``), written as two broadcast sums.
    """
    height, width = images.shape[-2:]
    matrices = matrices.to(images.dtype).view(-1, 2, 3, 1, 1)
    x = ((torch.arange(width, device=images.device, dtype=images.dtype) * 2 + 1) / width - 1).view(1, 1, -1)
    y = ((torch.arange(height, device=images.device, dtype=images.dtype) * 2 + 1) / height - 1).view(1, -1, 1)
    grid = torch.stack([m[:, 0] * x + m[:, 1] * y + m[:, 2] for m in matrices.unbind(dim=1)], dim=-1)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def rotate(images: torch.Tensor, degrees: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate each image about its centre by its angle in degrees, zero fill (torchvision's ``rotate``)."""
    height, width = images.shape[-2:]
    angle = torch.deg2rad(degrees.to(images.dtype))
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    matrices = torch.stack(
        [
            torch.stack([cos, -sin * height / width, zero], dim=1),
            torch.stack([sin * width / height, cos, zero], dim=1),
        ],
        dim=1,
    )
    return _affine(images, matrices, mode)


def shear_x(images: torch.Tensor, shear: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Shear each image along x by its factor about its top-left corner, zero fill (AutoAugment's ``ShearX``)."""
    height, width = images.shape[-2:]
    shear = shear.to(images.dtype)
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    ratio = shear * height / width
    matrices = torch.stack(
        [torch.stack([one, ratio, ratio], dim=1), torch.stack([zero, one, zero], dim=1)],
        dim=1,
    )
    return _affine(images, matrices, mode)


def _grey(images: torch.Tensor) -> torch.Tensor:
    return TF.rgb_to_grayscale(images, num_output_channels=1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Torchvision's ``adjust_contrast`` with a factor per image."""
    return _blend(images, _grey(images).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Torchvision's ``adjust_brightness`` with a factor per image."""
    return (images * _column(factor)).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Torchvision's ``adjust_saturation`` with a factor per image."""
    return _blend(images, _grey(images), factor)


def adjust_sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Torchvision's ``adjust_sharpness`` with a factor per image (3x3 smoothing kernel, border kept).

    The kernel (ones, 5 in the centre, over 13) is taken as a 3x3 box sum (shifted slices) plus 4 times the centre.
    """
    degenerate = images.clone()
    rows = images[..., :-2, :] + images[..., 1:-1, :] + images[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    degenerate[..., 1:-1, 1:-1] = (box + 4 * images[..., 1:-1, 1:-1]) / 13
    return _blend(images, degenerate, factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Torchvision's ``adjust_hue`` with a hue shift in [-0.5, 0.5] per image."""
    maximum, _ = images.max(dim=1)
    minimum, _ = images.min(dim=1)
    red, green, blue = images.unbind(dim=1)
    delta = maximum - minimum
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    hue = torch.where(
        maximum == red,
        (green - blue) / safe,
        torch.where(maximum == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue / 6).remainder(1.0)
    hue = (hue + shift.view(-1, 1, 1)).remainder(1.0)
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    k = (offsets + 6 * hue.unsqueeze(1)).remainder(6)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    # HSV back to RGB: value * (1 - saturation * ramp), where value * saturation = max - min
    return maximum.unsqueeze(1) - delta.unsqueeze(1) * ramp


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above each image's threshold."""
    return torch.where(images >= _column(threshold), 1 - images, images)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Torchvision's ``posterize`` of float images with a number of bits per image."""
    levels = _column(torch.pow(2.0, bits.to(images.dtype)))
    return torch.minimum((images * levels).floor(), levels - 1) / levels


def permute_channels(images: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Reorder each image's channels by its permutation (N, C)."""
    index = order.view(*order.shape, 1, 1).expand_as(images)
    return images.gather(1, index)


def _linspace(start: float, end: float) -> torch.Tensor:
    return torch.linspace(start, end, 10)


# AutoAugment's operations on float images: magnitude bins (10) and whether the magnitude's sign is random.
_AUTOAUGMENT_MAGNITUDES: dict[str, tuple[torch.Tensor | None, bool]] = {
    "ShearX": (_linspace(0.0, 0.3), True),
    "Rotate": (_linspace(0.0, 30.0), True),
    "Color": (_linspace(0.0, 0.9), True),
    "Contrast": (_linspace(0.0, 0.9), True),
    "Sharpness": (_linspace(0.0, 0.9), True),
    "Posterize": (8 - (torch.arange(10) / ((10 - 1) / 4)).round(), False),
    "Solarize": (_linspace(1.0, 0.0), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
    "Invert": (None, False),
}
_AUTOAUGMENT_OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ShearX": lambda images, value: shear_x(images, value, mode="nearest"),
    "Rotate": lambda images, value: rotate(images, value, mode="nearest"),
    "Color": lambda images, value: adjust_saturation(images, 1 + value),
    "Contrast": lambda images, value: adjust_contrast(images, 1 + value),
    "Sharpness": lambda images, value: adjust_sharpness(images, 1 + value),
    "Posterize": posterize,
    "Solarize": solarize,
    "AutoContrast": lambda images, _: TF.autocontrast(images),
    "Equalize": lambda images, _: TF.equalize(images),
    "Invert": lambda images, _: 1 - images,
}
_AUTOAUGMENT_NAMES = tuple(_AUTOAUGMENT_OPERATIONS)


def _autoaugment_tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operation ids, probabilities, magnitudes and sign flags of the policy, (25, 2) each."""
    ids, probabilities, magnitudes, signed = [], [], [], []
    for policy in AUTOAUGMENT_IMAGENET:
        for name, probability, magnitude_bin in policy:
            bins, is_signed = _AUTOAUGMENT_MAGNITUDES[name]
            ids.append(_AUTOAUGMENT_NAMES.index(name))
            probabilities.append(probability)
            magnitudes.append(0.0 if bins is None else float(bins[magnitude_bin]))
            signed.append(is_signed)
    shape = (len(AUTOAUGMENT_IMAGENET), 2)
    return (
        torch.tensor(ids).view(shape),
        torch.tensor(probabilities).view(shape),
        torch.tensor(magnitudes).view(shape),
        torch.tensor(signed).view(shape),
    )


def _rows(selected: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """Group the positions of a host tensor of ids: (id, positions) for each id present."""
    return [(int(value), (selected == value).nonzero().squeeze(1)) for value in selected.unique().tolist()]


def _apply(
    images: torch.Tensor,
    rows: torch.Tensor,
    operation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    values: torch.Tensor,
) -> None:
    """Apply an operation in place to the images at host positions ``rows`` with their values (host)."""
    values = to_device(values, images.device, images.dtype if values.is_floating_point() else values.dtype)
    index = to_device(rows, images.device)
    images.index_copy_(0, index, operation(images.index_select(0, index), values))


class TextureAugmentation:
    """anomalib's texture augmentation of DRAEM: 3 of 10 transforms, in random order, batched (see module)."""

    def __init__(self) -> None:
        self.policy = _autoaugment_tables()
        self.operations: tuple[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None], ...] = (
            self._contrast,
            self._photometric,
            self._sharpness,
            self._colour,
            self._solarize,
            self._posterize,
            self._invert,
            self._autoaugment,
            self._equalize,
            self._affine,
        )

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Host draws of ``count`` images: transform ids (count, 3) and their random numbers (count, 3, 6)."""
        choices = torch.rand(count, len(self.operations), generator=generator).argsort(dim=1)[:, :NUM_AUGMENTATIONS]
        return choices, torch.rand(count, NUM_AUGMENTATIONS, PARAMETERS, generator=generator)

    def __call__(self, images: torch.Tensor, choices: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
        """Augment images (N, 3, H, W) with host draws from :meth:`draw`; each transform runs once per slot."""
        images = images.clone()
        for slot in range(choices.shape[1]):
            for operation, rows in _rows(choices[:, slot]):
                self.operations[operation](images, rows, parameters[rows, slot])
        return images

    @staticmethod
    def _uniform(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * values

    def _contrast(self, images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, adjust_contrast, self._uniform(u[:, 0], 0.5, 2.0))

    def _photometric(self, images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        """RandomPhotometricDistort(p=1) with only brightness left free: brightness, then a channel permutation."""
        _apply(images, rows, adjust_brightness, self._uniform(u[:, 0], 0.8, 1.2))
        _apply(images, rows, permute_channels, u[:, 1:4].argsort(dim=1))

    @staticmethod
    def _sharpness(images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, adjust_sharpness, torch.full_like(u[:, 0], 2.0))

    def _colour(self, images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        """ColorJitter(hue=50/360, saturation=(0.5, 1.5)): both, in random order."""
        hue = self._uniform(u[:, 0], -50 / 360, 50 / 360)
        saturation = self._uniform(u[:, 1], 0.5, 1.5)
        hue_first = u[:, 2] < 0.5
        for group in (hue_first, ~hue_first):
            steps = [(adjust_hue, hue), (adjust_saturation, saturation)]
            for operation, values in steps if group is hue_first else steps[::-1]:
                if group.any():
                    _apply(images, rows[group], operation, values[group])

    def _solarize(self, images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, solarize, self._uniform(u[:, 0], 32 / 255, 128 / 255))

    @staticmethod
    def _posterize(images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, posterize, torch.full_like(u[:, 0], 4.0))

    @staticmethod
    def _invert(images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, _AUTOAUGMENT_OPERATIONS["Invert"], u[:, 0])

    @staticmethod
    def _equalize(images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, _AUTOAUGMENT_OPERATIONS["Equalize"], u[:, 0])

    def _affine(self, images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        _apply(images, rows, rotate, self._uniform(u[:, 0], -45.0, 45.0))

    def _autoaugment(self, images: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> None:
        """AutoAugment(IMAGENET): a policy per image, each of its two steps applied with its probability."""
        ids, probabilities, magnitudes, signed = self.policy
        policy = (u[:, 0] * len(AUTOAUGMENT_IMAGENET)).long().clamp_max(len(AUTOAUGMENT_IMAGENET) - 1)
        for step in range(2):
            applied = u[:, 1 + step] <= probabilities[policy, step]
            negative = signed[policy, step] & (u[:, 3 + step] <= 0.5)
            values = torch.where(negative, -magnitudes[policy, step], magnitudes[policy, step])
            for operation, positions in _rows(torch.where(applied, ids[policy, step], -1)):
                if operation >= 0:
                    name = _AUTOAUGMENT_NAMES[operation]
                    _apply(images, rows[positions], _AUTOAUGMENT_OPERATIONS[name], values[positions])


def _lattice_weights(
    cells: torch.Tensor,
    fractions: torch.Tensor,
    with_offset: bool,
) -> torch.Tensor:
    """(N, L, GRID) weights of the two lattice points around each of L positions along one axis.

    Perlin noise is a sum over the two neighbours ``a`` of a position along each axis of
    ``fade_a(t) * offset_a * gradient``: the per-axis factors put into one matrix per axis, so that the noise of an
    image is ``rows @ gradients @ columns.T``. With ``with_offset`` the weight of neighbour ``a`` carries the offset
    ``t - a`` of the position from it (the axis whose gradient component is dotted).
    """

    def fade(t: torch.Tensor) -> torch.Tensor:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    faded = fade(fractions)
    weights = torch.zeros(*cells.shape, GRID, dtype=fractions.dtype, device=fractions.device)
    for shift, share in ((0, 1 - faded), (1, faded)):
        value = share * (fractions - shift) if with_offset else share
        weights.scatter_(2, (cells + shift).unsqueeze(2), value.unsqueeze(2))
    return weights


def perlin_noise(scales: torch.Tensor, angles: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Perlin noise (N, H, W) as anomalib's ``generate_perlin_noise``, for a batch of scales and gradients.

    The same values up to float rounding, computed as two batched matrix products per image (see
    :func:`_lattice_weights`) instead of gathers at every pixel.

    Args:
        scales (torch.Tensor): Lattice cells per axis and image, (N, 2) integer powers of two, rows then columns.
        angles (torch.Tensor): Gradient angles in radians on a (N, GRID, GRID) lattice (only the first
            ``scale + 1`` rows and columns of each image are used).
        height (int): Rows of the noise.
        width (int): Columns of the noise.
    """
    device, dtype = angles.device, angles.dtype
    padded = (2 ** math.ceil(math.log2(height)), 2 ** math.ceil(math.log2(width)))
    axes = []
    for axis, (size, pad) in enumerate(((height, padded[0]), (width, padded[1]))):
        position = torch.arange(size, device=device, dtype=dtype).view(1, -1) * scales[:, axis : axis + 1] / pad
        axes.append((position.floor().long(), position.frac()))
    (row_cells, row_fractions), (column_cells, column_fractions) = axes
    # the row component of a gradient is dotted with the row offset, the column component with the column offset
    rows = torch.cat(
        [
            _lattice_weights(row_cells, row_fractions, with_offset=True) @ torch.cos(angles),
            _lattice_weights(row_cells, row_fractions, with_offset=False) @ torch.sin(angles),
        ],
        dim=2,
    )  # (N, H, 2 * GRID)
    columns = torch.cat(
        [
            _lattice_weights(column_cells, column_fractions, with_offset=False),
            _lattice_weights(column_cells, column_fractions, with_offset=True),
        ],
        dim=2,
    )  # (N, W, 2 * GRID)
    return math.sqrt(2.0) * rows @ columns.transpose(1, 2)


def rescale_flat_noise(noise: torch.Tensor) -> torch.Tensor:
    """Anomalib's fix for noise with no value above 0.5: stretched to [-1, 1] (all -1 for a constant one)."""
    flat = noise.flatten(1)
    low, high = flat.amin(dim=1).view(-1, 1, 1), flat.amax(dim=1).view(-1, 1, 1)
    span = high - low
    stretched = torch.where(span > 0, (noise - low) / torch.where(span > 0, span, 1), torch.zeros_like(noise)) * 2 - 1
    keep = (flat > 0.5).any(dim=1).view(-1, 1, 1)
    return torch.where(keep, noise, stretched)


class TextureBank:
    """Texture images decoded once, resized to the masks' size and kept as uint8 on the device.

    A texture is read from disk the first time it is drawn and appended to the bank; after that, drawing it costs an
    index. The bank holds the textures drawn so far only, and is not pickled with the model (it is rebuilt on use).

    Args:
        paths (Sequence[Path]): Texture image files.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.clear()

    def clear(self) -> None:
        """Forget the decoded textures."""
        self.images: torch.Tensor | None = None  # (loaded, 3, H, W) uint8
        self.slots = torch.full((len(self.paths),), -1, dtype=torch.long)  # file index -> row of images, -1: unread
        self.size: tuple[int, int, torch.device] | None = None

    def __len__(self) -> int:
        """Number of texture files."""
        return len(self.paths)

    def __getstate__(self) -> dict:
        """Pickle the file list only: the decoded images are a cache."""
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        """Restore an empty bank for the pickled file list."""
        self.paths = state["paths"]
        self.clear()

    def take(self, indices: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Textures at host ``indices``, (N, 3, H, W) float in [0, 1] on ``device``."""
        if self.size != (height, width, device):
            self.clear()
            self.size = (height, width, device)
        missing = indices[self.slots[indices] < 0].unique()
        if missing.numel():  # files not read yet: decode them and append them to the bank
            new = torch.stack([self._read(self.paths[index], height, width) for index in missing.tolist()])
            loaded = 0 if self.images is None else len(self.images)
            self.slots[missing] = torch.arange(loaded, loaded + len(missing))
            new = to_device(new, device)
            self.images = new if self.images is None else torch.cat([self.images, new])
        if self.images is None:  # no index drawn
            return torch.empty(0, 3, height, width, device=device)
        return self.images.index_select(0, to_device(self.slots[indices], device)).float() / 255

    @staticmethod
    def _read(path: Path, height: int, width: int) -> torch.Tensor:
        try:
            image = decode_image(str(path), mode=ImageReadMode.RGB)
        except RuntimeError as exc:
            msg = f"Could not use texture image '{path}' ({exc}); remove or replace it in the texture folder."
            raise RuntimeError(msg) from exc
        return TF.resize(image, [height, width], antialias=True)


class BatchedPerlinGenerator(nn.Module):
    """Perlin-noise masks and augmented anomaly sources for a batch (see the module docstring).

    Args:
        textures (Sequence[Path] | None): Texture image files; ``None`` or empty uses the noise itself as source.
            Defaults to ``None``.
        rotation_range (tuple[float, float]): Rotation of the noise in degrees. Defaults to ``(-90, 90)``.
        max_tries (int): Candidate masks per image. Defaults to ``10``.
        min_pixels (int): A mask must keep more than this many pixels inside its region. Defaults to ``4``.
    """

    def __init__(
        self,
        textures: Sequence[Path] | None = None,
        rotation_range: tuple[float, float] = (-90.0, 90.0),
        max_tries: int = 10,
        min_pixels: int = 4,
    ) -> None:
        super().__init__()
        self.bank = TextureBank(textures or [])
        self.rotation_range = rotation_range
        self.max_tries = max_tries
        self.min_pixels = min_pixels
        self.augmentation = TextureAugmentation()
        self.generator = torch.Generator()
        self.seeded = False

    def seed(self, seed: int) -> "BatchedPerlinGenerator":
        """Seed the generator's own random stream (host side; independent of torch's global one)."""
        self.generator.manual_seed(seed)
        self.seeded = True
        return self

    def host_generator(self) -> torch.Generator:
        """The generator's host stream; until :meth:`seed` is called it is seeded once from torch's global seed."""
        if not self.seeded:  # follow torch's global seed until seeded explicitly
            self.seed(int(torch.randint(2**62, (1,))))
        return self.generator

    @staticmethod
    def _candidates(
        scales: torch.Tensor,
        angles: torch.Tensor,
        rotations: torch.Tensor,
        height: int,
        width: int,
        device: torch.device,
    ) -> torch.Tensor:
        """Rotated noise of host draws, (N, H, W) on ``device``."""
        noise = perlin_noise(to_device(scales, device), to_device(angles, device), height, width)
        noise = rescale_flat_noise(noise)
        return rotate(noise.unsqueeze(1), to_device(rotations, device)).squeeze(1)

    def forward(
        self,
        count: int,
        height: int,
        width: int,
        device: torch.device,
        regions: torch.Tensor | None = None,
        all_at_once: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``count`` anomaly sources (N, 3, H, W) in [0, 1] and binary masks (N, 1, H, W) within ``regions``.

        Args:
            count (int): Number of anomalies.
            height (int): Height of the masks.
            width (int): Width of the masks.
            device (torch.device): Device of the outputs.
            regions (torch.Tensor | None): Where each mask may lie, (N, 1, H, W) in {0, 1}. Defaults to everywhere.
            all_at_once (bool | None): Compute every candidate mask at once (``None``: on accelerators only).
        """
        generator, tries = self.host_generator(), self.max_tries
        scales = 2 ** torch.randint(0, SCALE_EXPONENTS, (count, tries, 2), generator=generator)
        angles = 2 * math.pi * torch.rand(count, tries, GRID, GRID, generator=generator)
        low, high = self.rotation_range
        rotations = low + (high - low) * torch.rand(count, tries, generator=generator)
        textures = torch.randint(max(len(self.bank), 1), (count,), generator=generator)
        choices, parameters = self.augmentation.draw(count, generator)
        if all_at_once is None:
            all_at_once = device.type != "cpu"
        region = regions.squeeze(1) if regions is not None else None
        if all_at_once:
            noise = self._candidates(
                scales.flatten(0, 1),
                angles.flatten(0, 1),
                rotations.flatten(0, 1),
                height,
                width,
                device,
            ).view(count, tries, height, width)
            inside = noise > 0.5
            if region is not None:
                inside = inside & region.bool().unsqueeze(1)
            valid = inside.flatten(2).sum(dim=2) > self.min_pixels  # (N, tries)
            steps = torch.arange(tries, device=device)
            # the first valid candidate, else the last one
            first = torch.where(valid, steps, tries - 1).amin(dim=1)
            noise = noise[torch.arange(count, device=device), first]
        else:  # round by round, only for images still without a mask (host reads are free on the CPU)
            noise = torch.empty(count, height, width, device=device)
            pending = torch.arange(count)
            for attempt in range(tries):
                candidate = self._candidates(
                    scales[pending, attempt],
                    angles[pending, attempt],
                    rotations[pending, attempt],
                    height,
                    width,
                    device,
                )
                noise[pending] = candidate
                inside = candidate > 0.5
                if region is not None:
                    inside = inside & region[pending].bool()
                pending = pending[(inside.flatten(1).sum(dim=1) <= self.min_pixels).cpu()]
                if pending.numel() == 0:
                    break
        masks = (noise > 0.5).to(torch.float32).unsqueeze(1)
        if regions is not None:
            masks = masks * regions.to(masks.dtype)
        if len(self.bank):
            sources = self.bank.take(textures, height, width, device)
        else:
            sources = (noise.unsqueeze(1) * 0.5 + 0.25).expand(-1, 3, -1, -1)
        return self.augmentation(sources, choices, parameters), masks
