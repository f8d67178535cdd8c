# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Cosine-distance anomaly map."""

from pathlib import Path

import pytest
import torch
from anomalib.models.components import GaussianBlur2d

from anomalib_kd_ext.models.components import CosineAnomalyMap, anomaly_score, cosine_distance


def test_identical_features_give_zero_map() -> None:
    """Identical teacher and student features give an all-zero map of the requested size."""
    features = [torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8)]
    anomaly_map = CosineAnomalyMap()(features, features, (64, 48))
    assert anomaly_map.shape == (2, 1, 64, 48)
    assert torch.allclose(anomaly_map, torch.zeros_like(anomaly_map), atol=1e-6)


@pytest.mark.parametrize(("mode", "expected"), [("add", 2.0 + 1.0), ("multiply", 2.0 * 1.0)])
def test_fusion_of_constant_distances(mode: str, expected: float) -> None:
    """Constant per-level distances are fused by adding or by multiplying."""
    teacher = [torch.ones(1, 4, 8, 8), torch.ones(1, 4, 4, 4)]
    opposite = -teacher[0]  # distance 2 everywhere
    orthogonal = torch.zeros(1, 4, 4, 4)
    orthogonal[:, 0] = 1.0
    teacher[1] = torch.zeros(1, 4, 4, 4)
    teacher[1][:, 1] = 1.0  # orthogonal to the student: distance 1 everywhere
    anomaly_map = CosineAnomalyMap(mode=mode)(teacher, [opposite, orthogonal], (32, 32))
    assert torch.allclose(anomaly_map, torch.full_like(anomaly_map, expected), atol=1e-5)


def test_zero_features_do_not_give_nan() -> None:
    """All-zero features give a finite map and a finite distance."""
    zeros = [torch.zeros(1, 4, 8, 8)]
    anomaly_map = CosineAnomalyMap()(zeros, zeros, (32, 32))
    assert torch.isfinite(anomaly_map).all()
    assert torch.isfinite(cosine_distance(zeros[0], zeros[0])).all()


def test_score_is_map_maximum() -> None:
    """The anomaly score is the maximum of each image's map."""
    anomaly_map = torch.zeros(3, 1, 8, 8)
    anomaly_map[1, 0, 2, 5] = 0.7
    assert anomaly_score(anomaly_map).flatten().tolist() == pytest.approx([0.0, 0.7, 0.0])


def test_bad_mode() -> None:
    """An unknown fusion mode raises ValueError."""
    with pytest.raises(ValueError, match="'add' or 'multiply'"):
        CosineAnomalyMap(mode="max")


@pytest.mark.parametrize("size", [(256, 256), (96, 160)])
def test_separable_blur_equals_anomalib_blur(size: tuple[int, int]) -> None:
    """The row-and-column blur gives anomalib's GaussianBlur2d output (the speed-up changes no result)."""
    generator = torch.Generator().manual_seed(0)
    anomaly_map = torch.rand(2, 1, *size, generator=generator)
    separable = CosineAnomalyMap(separable_blur=True)
    reference = GaussianBlur2d(sigma=(4.0, 4.0), channels=1, kernel_size=(33, 33))
    torch.testing.assert_close(separable.smooth(anomaly_map), reference(anomaly_map), atol=1e-5, rtol=0)
    assert separable.state_dict().keys() == {"blur.kernel"}  # checkpoints are unchanged


@pytest.mark.parametrize("mode", ["add", "multiply"])
@pytest.mark.parametrize("size", [(256, 256), (96, 160)])
def test_matrix_tail_equals_interpolate_then_blur(mode: str, size: tuple[int, int], device: torch.device) -> None:
    """Upsampling and blur as matrix products give the map of ``F.interpolate`` + blur (float rounding only)."""
    generator = torch.Generator().manual_seed(0)
    strides = (4, 8, 16)
    teacher = [torch.rand(2, 8, size[0] // s, size[1] // s, generator=generator) for s in strides]
    student = [torch.rand(2, 8, size[0] // s, size[1] // s, generator=generator) for s in strides]
    reference = CosineAnomalyMap(mode=mode, matrix_tail=False)(teacher, student, size)
    on_device = [t.to(device) for t in teacher], [s.to(device) for s in student]
    matrix = CosineAnomalyMap(mode=mode).to(device)(*on_device, size)
    assert matrix.shape == reference.shape == (2, 1, *size)
    torch.testing.assert_close(matrix.cpu(), reference, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_map_is_float32_under_autocast_and_half_features(dtype: torch.dtype) -> None:
    """Under autocast the map is float32 and equals the fp32 map; a half-precision model's map is float32 too.

    (``model.half()`` rounds the blur taps to half precision: that map is close to, not equal to, the fp32 one.)
    """
    teacher, student = [torch.rand(1, 4, 16, 16)], [torch.rand(1, 4, 16, 16)]
    generator = CosineAnomalyMap()
    reference = generator(teacher, student, (64, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = generator(teacher, student, (64, 64))
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, reference)
    halves = [t.to(dtype) for t in teacher], [s.to(dtype) for s in student]
    from_half = generator.to(dtype)(*halves, (64, 64))
    assert from_half.dtype == torch.float32
    expected = CosineAnomalyMap()([t.float() for t in halves[0]], [s.float() for s in halves[1]], (64, 64))
    torch.testing.assert_close(from_half, expected, atol=2e-3, rtol=2e-3)


class _TailOnly(torch.nn.Module):
    """The anomaly-map tail behind anomalib's fixed-size input resize, as it sits in an exported model."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.generator = CosineAnomalyMap(mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(64, 96), mode="bilinear", align_corners=False)
        teacher = [torch.nn.functional.avg_pool2d(x, s) for s in (4, 8)]
        student = [torch.nn.functional.avg_pool2d(x.flip(1), s) for s in (4, 8)]
        return self.generator(teacher, student, x.shape[-2:])


@pytest.mark.parametrize("mode", ["add", "multiply"])
def test_matrix_tail_in_openvino_matches_torch(mode: str, tmp_path: Path) -> None:
    """Exported as anomalib exports (dynamo, dynamic batch, height and width), OpenVINO FP32 gives the torch map.

    Regression: with the blur matrix transposed in the graph before a MatMul, OpenVINO 2026.4 returned a map
    off by 0.01 (maximum 0.05) while ONNX Runtime and torch agreed.
    """
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    module = _TailOnly(mode).eval()
    path = tmp_path / "tail.onnx"
    auto = torch.export.Dim.AUTO
    torch.onnx.export(
        module,
        (torch.rand(1, 3, 64, 96),),
        path,
        dynamo=True,
        input_names=["x"],
        dynamic_shapes={"x": {0: auto, 2: auto, 3: auto}},
        opset_version=18,
    )
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for shape in [(1, 3, 64, 96), (2, 3, 80, 80)]:
        sample = torch.rand(shape)
        with torch.no_grad():
            expected = module(sample).numpy()
        result = compiled(sample.numpy())[0]
        assert result.shape == expected.shape
        assert abs(result - expected).max() < 1e-5
