# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Reverse-distillation students: anomalib's blocks for ResNets, generated ones for other CNNs."""

import pytest
import torch
from anomalib.models.components.backbone.resnet_decoder import ResNetDecoder
from anomalib.models.image.reverse_distillation.components.bottleneck import OCBE

from anomalib_kd_ext.models.components import GeneratedDecoder, Teacher, build_reverse_student
from anomalib_kd_ext.models.components.reverse_student import required_input_multiple


def test_resnet_teacher_uses_anomalib_blocks() -> None:
    """A ResNet teacher gets anomalib's OCBE and ResNet decoder, reproducing the feature shapes."""
    student = build_reverse_student("resnet18", ["layer1", "layer2", "layer3"], [64, 128, 256], [4, 8, 16])
    assert isinstance(student.bottleneck, OCBE)
    assert isinstance(student.decoder, ResNetDecoder)
    features = [torch.rand(1, 64, 64, 64), torch.rand(1, 128, 32, 32), torch.rand(1, 256, 16, 16)]
    assert [f.shape for f in student(features)] == [f.shape for f in features]


def test_wide_resnet_bottleneck_is_wide_as_in_rd4ad() -> None:
    """A Wide ResNet teacher gets RD4AD's wide bottleneck."""
    student = build_reverse_student(
        "wide_resnet50_2.tv_in1k",
        ["layer1", "layer2", "layer3"],
        [256, 512, 1024],
        [4, 8, 16],
    )
    first_block = student.bottleneck.bn_layer[0]
    assert first_block.conv1.out_channels == 1024  # 512 planes x (128 / 64) width, RD4AD's wide bottleneck


@pytest.mark.parametrize("size", [(256, 256), (320, 224)])
def test_generated_student_matches_teacher_shapes(size: tuple[int, int]) -> None:
    """An EfficientNet teacher gets a generated decoder reproducing its feature shapes."""
    teacher = Teacher("tf_efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"], pre_trained=False)
    student = build_reverse_student("tf_efficientnet_lite0", teacher.layers, teacher.channels, teacher.strides)
    assert isinstance(student.decoder, GeneratedDecoder)
    features = teacher(torch.rand(2, 3, *size))
    assert [f.shape for f in student(features)] == [f.shape for f in features]
    assert required_input_multiple(teacher.strides) == 32


def test_generated_decoder_output_is_not_rectified() -> None:
    """The generated decoder can output negative values."""
    student = build_reverse_student("tf_efficientnet_lite0", ["a", "b"], [8, 16], [4, 8])
    outputs = student([torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)])
    assert all((o < 0).any() for o in outputs)  # EfficientNet features are signed


def test_resnet_with_other_layers_gets_generated_student() -> None:
    """A ResNet with other layers than anomalib's decoder expects gets a generated decoder."""
    student = build_reverse_student("resnet18", ["layer2", "layer3"], [128, 256], [8, 16])
    assert isinstance(student.decoder, GeneratedDecoder)
    features = [torch.rand(1, 128, 32, 32), torch.rand(1, 256, 16, 16)]
    assert [f.shape for f in student(features)] == [f.shape for f in features]


def test_no_decoder_rule_lists_supported() -> None:
    """Backbones that no decoder rule fits raise ValueError with an explanatory message."""
    with pytest.raises(ValueError, match="Supported: anomalib's ResNet decoders"):
        build_reverse_student("some_cnn", ["a", "b"], [16, 32], [8, 8])
    with pytest.raises(ValueError, match="No reverse-distillation decoder rule"):
        build_reverse_student("some_cnn", ["a", "b"], [16, 32], [8, 24])


@pytest.mark.parametrize(
    ("backbone", "layers", "channels", "strides"),
    [
        ("resnet18", ["layer1", "layer2", "layer3"], [64, 128, 256], [4, 8, 16]),
        ("tf_efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"], [24, 40, 112], [4, 8, 16]),
    ],
)
def test_every_student_parameter_gets_a_gradient(
    backbone: str,
    layers: list[str],
    channels: list[int],
    strides: list[int],
) -> None:
    """Every trained student parameter receives a gradient; the only frozen ones are anomalib's unused conv4/bn4."""
    student = build_reverse_student(backbone, layers, channels, strides)
    features = [torch.rand(1, c, 64 // s, 64 // s) for c, s in zip(channels, strides, strict=True)]
    sum(f.mean() for f in student(features)).backward()
    unused = [name for name, p in student.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused[:5]
    frozen = {name.split(".")[1] for name, p in student.named_parameters() if not p.requires_grad}
    assert frozen <= {"conv4", "bn4"}, frozen
