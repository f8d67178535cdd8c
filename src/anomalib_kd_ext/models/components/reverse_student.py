# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Reverse-distillation student: one-class bottleneck embedding (OCBE) followed by a reverse decoder.

RD4AD (Deng and Li, CVPR 2022) fuses the teacher's feature pyramid into one compact embedding and
decodes it back into the pyramid. For ResNet and WideResNet teachers read at ``layer1..layer3`` this
module uses anomalib's own blocks (``OCBE`` and ``ResNetDecoder``). For any other timm CNN teacher it
generates the same two parts from the teacher's channels and strides:

- bottleneck: each level is brought to the coarsest level's resolution by stride-2 3x3 convolutions,
  the levels are concatenated, and one stride-2 stage of two residual blocks makes the embedding
  (``2 x`` the coarsest channels, at twice the coarsest stride);
- decoder: from the embedding back to every level, coarse to fine, each stage made of stride-2
  transposed convolutions and a residual refinement, ending in a linear 3x3 convolution so that
  features which are not rectified (EfficientNet blocks end in a linear projection) can be matched.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.components import build_reverse_student
    >>> student = build_reverse_student("tf_efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"],
    ...                                 channels=[24, 40, 112], strides=[4, 8, 16])
    >>> feats = [torch.rand(1, 24, 64, 64), torch.rand(1, 40, 32, 32), torch.rand(1, 112, 16, 16)]
    >>> [f.shape[1:] for f in student(feats)]
    [torch.Size([24, 64, 64]), torch.Size([40, 32, 32]), torch.Size([112, 16, 16])]
"""

import itertools
import math
from collections.abc import Sequence

import torch
from anomalib.models.components.backbone import get_decoder
from anomalib.models.image.reverse_distillation.components import get_bottleneck_layer
from torch import nn
from torchvision.models.resnet import BasicBlock

from .teacher import architecture_name

RESNET_LAYERS = ("layer1", "layer2", "layer3")
# Block arguments RD4AD passes to its bottleneck for each architecture (anomalib's decoders match them).
ANOMALIB_RESNET_STUDENTS: dict[str, dict[str, int]] = {
    "resnet18": {},
    "resnet34": {},
    "resnet50": {},
    "resnet101": {},
    "resnet152": {},
    "resnext50_32x4d": {"groups": 32, "width_per_group": 4},
    "resnext101_32x8d": {"groups": 32, "width_per_group": 8},
    "wide_resnet50_2": {"width_per_group": 128},
    "wide_resnet101_2": {"width_per_group": 128},
}


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _upsample_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _doublings(fine_stride: int, coarse_stride: int) -> int:
    ratio = coarse_stride // fine_stride
    if ratio < 1 or ratio * fine_stride != coarse_stride or ratio & (ratio - 1):
        msg = f"feature strides must double from level to level, got {fine_stride} -> {coarse_stride}"
        raise ValueError(msg)
    return int(math.log2(ratio))


class GeneratedBottleneck(nn.Module):
    """One-class bottleneck embedding generated from a teacher's channels and strides.

    Args:
        channels (Sequence[int]): Channels of the teacher levels, fine to coarse.
        strides (Sequence[int]): Strides of the teacher levels, fine to coarse.
        num_blocks (int): Residual blocks in the stride-2 embedding stage. Defaults to ``2``.
        embedding_channels (int | None): Channels of the embedding. Defaults to twice the coarsest channels.
    """

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_blocks: int = 2,
        embedding_channels: int | None = None,
    ) -> None:
        super().__init__()
        coarse_channels, coarse_stride = channels[-1], strides[-1]
        self.align = nn.ModuleList()
        for level_channels, level_stride in zip(channels, strides, strict=True):
            steps: list[nn.Module] = []
            in_channels, stride = level_channels, level_stride
            for _ in range(_doublings(level_stride, coarse_stride)):
                stride *= 2
                # Each step takes the width of the teacher level at the stride it reaches, if there is one.
                out_channels = next(c for c, s in zip(channels, strides, strict=True) if s >= stride)
                steps.append(_conv_bn_relu(in_channels, out_channels, stride=2))
                in_channels = out_channels
            self.align.append(nn.Sequential(*steps))
        fused_channels = coarse_channels * len(channels)
        self.embedding_channels = embedding_channels or 2 * coarse_channels
        downsample = nn.Sequential(
            nn.Conv2d(fused_channels, self.embedding_channels, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(self.embedding_channels),
        )
        blocks = [BasicBlock(fused_channels, self.embedding_channels, stride=2, downsample=downsample)]
        blocks += [BasicBlock(self.embedding_channels, self.embedding_channels) for _ in range(1, num_blocks)]
        self.embed = nn.Sequential(*blocks)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse the feature pyramid into one embedding of shape (N, 2 * C_coarse, H_coarse / 2, W_coarse / 2)."""
        aligned = [align(feature) for align, feature in zip(self.align, features, strict=True)]
        return self.embed(torch.cat(aligned, dim=1))


class GeneratedDecoder(nn.Module):
    """Reverse decoder generated from a teacher's channels and strides.

    Args:
        channels (Sequence[int]): Channels of the teacher levels, fine to coarse.
        strides (Sequence[int]): Strides of the teacher levels, fine to coarse.
        embedding_channels (int): Channels of the bottleneck embedding.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], embedding_channels: int) -> None:
        super().__init__()
        in_channels, in_stride = embedding_channels, 2 * strides[-1]
        stages = []
        for level_channels, stride in reversed(list(zip(channels, strides, strict=True))):
            layers: list[nn.Module] = []
            for _ in range(_doublings(stride, in_stride)):
                layers.append(_upsample_bn_relu(in_channels, level_channels))
                in_channels = level_channels
            layers += [
                BasicBlock(level_channels, level_channels),
                nn.Conv2d(level_channels, level_channels, kernel_size=3, padding=1),
            ]
            stages.append(nn.Sequential(*layers))
            in_stride = stride
        self.stages = nn.ModuleList(stages)

    def forward(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        """Decode the embedding into one feature map per teacher level, fine to coarse."""
        outputs = []
        features = embedding
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        return outputs[::-1]


class ReverseStudent(nn.Module):
    """Bottleneck and decoder: teacher pyramid -> one-class embedding -> reconstructed pyramid.

    Args:
        bottleneck (nn.Module): Maps a list of feature maps to one embedding.
        decoder (nn.Module): Maps the embedding to a list of feature maps, fine to coarse.
    """

    def __init__(self, bottleneck: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        self.decoder = decoder

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Reconstruct ``features`` through the bottleneck."""
        return list(self.decoder(self.bottleneck(list(features))))


def _stride_problem(strides: Sequence[int]) -> str | None:
    """Why ``strides`` cannot be decoded (each level must double the previous one at least once), or ``None``."""
    try:
        for fine, coarse in itertools.pairwise(strides):
            if _doublings(fine, coarse) < 1:
                return f"two levels share stride {fine}"
    except ValueError as exc:
        return str(exc)
    return None


def _check_strides(backbone: str, layers: Sequence[str], strides: Sequence[int]) -> None:
    if (problem := _stride_problem(strides)) is not None:
        msg = (
            f"No reverse-distillation decoder rule for backbone '{backbone}' with layers {list(layers)} "
            f"(strides {list(strides)}: {problem}). Supported: anomalib's ResNet decoders for "
            f"{sorted(ANOMALIB_RESNET_STUDENTS)} at layers {list(RESNET_LAYERS)}, and generated decoders for timm "
            "CNNs whose chosen levels have strictly doubling strides (e.g. tf_efficientnet_lite0 at "
            "['blocks.1', 'blocks.2', 'blocks.4'])."
        )
        raise ValueError(msg) from None


def build_reverse_student(
    backbone: str,
    layers: Sequence[str],
    channels: Sequence[int],
    strides: Sequence[int],
    input_channels: Sequence[int] | None = None,
) -> ReverseStudent:
    """Build the reverse-distillation student that fits a teacher.

    Args:
        backbone (str): timm name of the teacher (a weights tag is ignored).
        layers (Sequence[str]): The teacher levels the student reconstructs.
        channels (Sequence[int]): Channels of those levels.
        strides (Sequence[int]): Strides of those levels.
        input_channels (Sequence[int] | None): Channels of the levels fed to the bottleneck, when they differ
            from ``channels`` (e.g. teacher and student features concatenated). The bottleneck is then
            generated for them. Defaults to ``None`` (same as ``channels``).

    Returns:
        ReverseStudent: anomalib's OCBE and ResNet decoder for ResNet-family teachers read at
        ``layer1..layer3``; a generated bottleneck and decoder for any other CNN.

    Raises:
        ValueError: If the teacher has no decoder rule (strides that do not double between levels).
    """
    arch = architecture_name(backbone)
    bottleneck_channels = list(channels if input_channels is None else input_channels)
    same_input = bottleneck_channels == list(channels)
    if arch in ANOMALIB_RESNET_STUDENTS and tuple(layers) == RESNET_LAYERS:
        # Bottleneck before decoder: the order of random initialisation is part of the numeric regression tests.
        if same_input:
            bottleneck = get_bottleneck_layer(arch, **ANOMALIB_RESNET_STUDENTS[arch])
            # anomalib's OCBE keeps RD4AD's conv4/bn4, which its forward never calls: freeze them, so that every
            # trained parameter receives a gradient (distributed training rejects unused parameters).
            bottleneck.conv4.requires_grad_(requires_grad=False)
            bottleneck.bn4.requires_grad_(requires_grad=False)
        else:
            embedding_channels = 512 if arch in {"resnet18", "resnet34"} else 2048  # what anomalib's decoder takes
            bottleneck = GeneratedBottleneck(bottleneck_channels, strides, embedding_channels=embedding_channels)
        return ReverseStudent(bottleneck, get_decoder(arch))
    _check_strides(backbone, layers, strides)
    bottleneck = GeneratedBottleneck(bottleneck_channels, strides)
    decoder = GeneratedDecoder(channels, strides, bottleneck.embedding_channels)
    return ReverseStudent(bottleneck, decoder)


def required_input_multiple(strides: Sequence[int]) -> int:
    """Smallest number that input height and width must be multiples of (the embedding stride)."""
    return 2 * max(strides)


def check_input_size(height: int, width: int, multiple: int, what: str = "the student") -> None:
    """Raise a clear error for an input size ``what`` cannot reproduce (height or width not a multiple of ``multiple``).

    Raises:
        ValueError: Naming the size, the rule and the fix.
    """
    if height % multiple or width % multiple:
        msg = (
            f"Input size {height}x{width} is not supported by this teacher: height and width must be "
            f"multiples of {multiple} (e.g. 256 or 320) for {what}. Change the pre-processor's Resize."
        )
        raise ValueError(msg)
