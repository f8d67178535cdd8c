# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The FP32 scope of INT8 exports on hand-built OpenVINO graphs: the stems of the networks that read the image."""

import numpy as np
from openvino import Model
from openvino import opset13 as ops

from anomalib_kd_ext.models.components import input_convolutions


def _weights(out_channels: int, in_channels: int) -> np.ndarray:
    return np.ones((out_channels, in_channels, 3, 3), dtype=np.float32)


def test_stems_are_the_first_weighted_layers_on_the_image_paths_only() -> None:
    """Both networks reading the normalised image give their first layer; deeper layers and other inputs do not."""
    image = ops.parameter([1, 3, 16, 16], np.float32, name="image")
    other = ops.parameter([1, 3, 16, 16], np.float32, name="other")
    normalised = ops.add(ops.multiply(image, np.full((1, 3, 1, 1), 2.0, np.float32)), np.float32(-1.0))
    stem = ops.convolution(normalised, _weights(8, 3), [1, 1], [1, 1], [1, 1], [1, 1], name="stem")
    deeper = ops.convolution(ops.relu(stem), _weights(8, 8), [1, 1], [1, 1], [1, 1], [1, 1], name="deeper")
    depthwise = ops.group_convolution(
        normalised,
        np.ones((3, 1, 1, 3, 3), dtype=np.float32),
        [1, 1],
        [1, 1],
        [1, 1],
        [1, 1],
        name="second_stem",
    )
    # A shape computation from the image feeds a reshape in front of a convolution of the other input.
    shape = ops.convert(ops.shape_of(image), np.int64)
    other_conv = ops.convolution(
        ops.reshape(other, shape, special_zero=False),
        _weights(8, 3),
        [1, 1],
        [1, 1],
        [1, 1],
        [1, 1],
        name="other_conv",
    )
    model = Model([deeper, depthwise, other_conv], [image, other], "two_stems")

    assert sorted(input_convolutions(model)) == ["second_stem", "stem"]
