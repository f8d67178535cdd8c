# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DSKD torch model: shapes, gradient paths, switches and their errors."""

from pathlib import Path

import pytest
import torch

from anomalib_kd_ext.models.components import CosineAnomalyMap
from anomalib_kd_ext.models.dskd.loss import DualStudentLoss, pyramid_matching_loss
from anomalib_kd_ext.models.dskd.torch_model import DSKDModel


@pytest.mark.parametrize("df_source", ["student", "teacher", "both"])
@pytest.mark.parametrize("size", [(256, 256), (320, 224)])
def test_shapes_for_every_df_source(
    df_source: str,
    size: tuple[int, int],
    resnet18: dict,
    device: torch.device,
) -> None:
    """Every DF source gives the expected training pyramids and full-size inference outputs, on every device."""
    model = DSKDModel(**resnet18, df_source=df_source).to(device)
    model.train()
    features = model(torch.rand(2, 3, *size, device=device))
    expected = [
        (2, 64, size[0] // 4, size[1] // 4),
        (2, 128, size[0] // 8, size[1] // 8),
        (2, 256, size[0] // 16, size[1] // 16),
    ]
    for pyramid in (features.teacher, features.encoder_student, features.decoder_student):
        assert [tuple(f.shape) for f in pyramid] == expected
    model.eval()
    with torch.no_grad():
        output = model(torch.rand(1, 3, *size, device=device))
    assert output.anomaly_map.shape == (1, 1, *size)
    assert output.anomaly_map.dtype == torch.float32
    assert output.pred_score.shape == (1, 1)


def _grad_norms(model: DSKDModel, loss: torch.Tensor) -> dict[str, float]:
    """Back-propagate ``loss`` and return the summed absolute gradient of each model part."""
    model.zero_grad()
    loss.backward()
    norms = {}
    for part in ("encoder_student", "embedding", "decoder_student", "teacher"):
        grads = [p.grad for p in getattr(model, part).parameters() if p.grad is not None]
        norms[part] = float(sum(g.abs().sum() for g in grads)) if grads else 0.0
    return norms


@pytest.mark.parametrize("detach", [False, True])
def test_gradient_paths(detach: bool, resnet18: dict, device: torch.device) -> None:
    """Students and embedding get gradients, the teacher none; Sd's loss reaches Se unless detached."""
    torch.manual_seed(0)
    model = DSKDModel(**resnet18, detach_encoder_student=detach).to(device).train()
    features = model(torch.rand(2, 3, 64, 64, device=device))
    losses = DualStudentLoss()(features)
    norms = _grad_norms(model, losses["loss"])
    assert norms["encoder_student"] > 0
    assert norms["embedding"] > 0
    assert norms["decoder_student"] > 0
    assert norms["teacher"] == 0
    # Sd's loss alone reaches Se through the DF embedding unless detached.
    features = model(torch.rand(2, 3, 64, 64, device=device))
    decoder_only = _grad_norms(model, pyramid_matching_loss(features.teacher, features.decoder_student))
    assert (decoder_only["encoder_student"] == 0) == detach


def test_decoder_student_off_gives_encoder_only_map(resnet18: dict) -> None:
    """Without the decoder student, the map comes from the encoder student alone."""
    torch.manual_seed(0)
    full = DSKDModel(**resnet18).eval()
    encoder_only = DSKDModel(**resnet18, use_decoder_student=False).eval()
    encoder_only.load_state_dict(full.state_dict(), strict=False)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = full.features(images)
        expected = CosineAnomalyMap()(features.teacher, features.encoder_student, (64, 64))
        output = encoder_only(images)
    assert encoder_only.decoder_student is None
    assert torch.allclose(output.anomaly_map, expected, atol=1e-6)


def test_map_fuses_both_students(resnet18: dict) -> None:
    """The map compares the doubled teacher features with the sum of both students' features."""
    torch.manual_seed(0)
    model = DSKDModel(**resnet18).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        features = model.features(images)
        generator = CosineAnomalyMap()
        both = generator(features.teacher * 2, features.encoder_student + features.decoder_student, (64, 64))
        assert torch.allclose(model(images).anomaly_map, both, atol=1e-6)


def test_encoder_student_off_with_teacher_source_is_reverse_distillation(resnet18: dict) -> None:
    """Without the encoder student and with teacher DF source, only the decoder student runs."""
    model = DSKDModel(**resnet18, use_encoder_student=False, df_source="teacher").train()
    features = model(torch.rand(1, 3, 64, 64))
    assert features.encoder_student is None
    assert len(features.decoder_student) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"use_encoder_student": False, "use_decoder_student": False}, "Both students"),
        ({"use_encoder_student": False, "df_source": "student"}, "df_source='teacher'"),
        ({"df_source": "nobody"}, "df_source must be one of"),
    ],
)
def test_invalid_switch_combinations(kwargs: dict, match: str, resnet18: dict) -> None:
    """Invalid combinations of student switches and DF source raise ValueError."""
    with pytest.raises(ValueError, match=match):
        DSKDModel(**resnet18, **kwargs)


def test_impossible_size(resnet18: dict) -> None:
    """An input size that is not a multiple of 32 raises ValueError."""
    model = DSKDModel(**resnet18).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 200, 200))


def test_missing_weights_file(tmp_path: Path) -> None:
    """A missing weights file raises a FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        DSKDModel(backbone="resnet18", backbone_weights=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0"])
def test_every_trainable_parameter_gets_a_gradient(backbone: str, resnet18: dict) -> None:
    """No unused parameters (distributed training refuses them): timm's unused EfficientNet blocks are pruned."""
    layers = resnet18["layers"] if backbone == "resnet18" else ["blocks.1", "blocks.2", "blocks.4"]
    model = DSKDModel(backbone=backbone, layers=layers, pre_trained=False).train()
    DualStudentLoss()(model(torch.rand(2, 3, 64, 64)))["loss"].backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused[:5]
