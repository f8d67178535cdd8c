# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""PyTorch model of DSKD: a frozen teacher and two students with inverted structures.

- **Se**, the encoder-like student: the teacher's architecture, randomly initialised, fed the image
  (STPM's student), returning the teacher's levels.
- **DF embedding**: a one-class bottleneck that fuses a feature pyramid into one deep embedding; its
  input is Se's pyramid (``df_source="student"``), the teacher's (``"teacher"``, RD4AD style) or both
  concatenated level by level (``"both"``).
- **Sd**, the decoder-like student: a reverse decoder from the DF embedding back to the teacher's levels.

In training mode the model returns the features the loss needs; in eval mode an
:class:`~anomalib.data.InferenceBatch` whose map fuses ``1 - cos(T, S)`` over levels and students.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.dskd.torch_model import DSKDModel
    >>> model = DSKDModel(backbone="resnet18", pre_trained=False).eval()
    >>> model(torch.rand(1, 3, 256, 256)).anomaly_map.shape
    torch.Size([1, 1, 256, 256])
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import TimmFeatureExtractor
from torch import nn

if TYPE_CHECKING:
    from anomalib.data.utils.tiler import Tiler

from anomalib_kd_ext.models.components import (
    CosineAnomalyMap,
    Teacher,
    anomaly_score,
    architecture_name,
    build_reverse_student,
    check_input_size,
    prune_unused_blocks,
    required_input_multiple,
)

DFSource = Literal["student", "teacher", "both"]
DF_SOURCES = ("student", "teacher", "both")


class DSKDFeatures(NamedTuple):
    """Feature pyramids of the teacher and the two students (``None`` for a student switched off)."""

    teacher: list[torch.Tensor]
    encoder_student: list[torch.Tensor] | None
    decoder_student: list[torch.Tensor] | None


class DSKDModel(nn.Module):
    """DSKD: Dual-Student Knowledge Distillation.

    Args:
        backbone (str): timm teacher (weights tag allowed); Se uses the same architecture. Defaults to
            ``"resnet18.tv_in1k"``.
        layers (Sequence[str]): Levels matched by both students. Defaults to ``("layer1", "layer2", "layer3")``.
        pre_trained (bool): Pre-trained teacher weights. Defaults to ``True``.
        backbone_weights (str | Path | None): Local teacher weights file. Defaults to ``None``.
        df_source (DFSource): Input of the DF embedding: ``"student"``, ``"teacher"`` or ``"both"``.
            Defaults to ``"student"``.
        use_encoder_student (bool): Keep Se. Defaults to ``True``.
        use_decoder_student (bool): Keep DF + Sd. Defaults to ``True``.
        detach_encoder_student (bool): Stop Sd's loss from reaching Se through DF. Defaults to ``False``.
        anomaly_map_mode (Literal["add", "multiply"]): Fusion over levels and students. Defaults to ``"add"``.

    Raises:
        ValueError: Both students off, an unknown ``df_source``, or a DF source that needs Se while Se is off.
    """

    def __init__(
        self,
        backbone: str = "resnet18.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        df_source: DFSource = "student",
        use_encoder_student: bool = True,
        use_decoder_student: bool = True,
        detach_encoder_student: bool = False,
        anomaly_map_mode: Literal["add", "multiply"] = "add",
    ) -> None:
        super().__init__()
        if df_source not in DF_SOURCES:
            msg = f"df_source must be one of {DF_SOURCES}, got {df_source!r}."
            raise ValueError(msg)
        if not (use_encoder_student or use_decoder_student):
            msg = "Both students are switched off: keep use_encoder_student and/or use_decoder_student."
            raise ValueError(msg)
        if use_decoder_student and not use_encoder_student and df_source != "teacher":
            msg = (
                f"df_source={df_source!r} feeds the encoder student's features to the DF embedding, but the encoder "
                "student is switched off: use df_source='teacher' (reverse distillation) or keep the encoder student."
            )
            raise ValueError(msg)
        self.df_source = df_source
        self.detach_encoder_student = detach_encoder_student
        self.teacher = Teacher(backbone, layers, pre_trained=pre_trained, backbone_weights=backbone_weights)
        channels, strides = self.teacher.channels, self.teacher.strides
        self.encoder_student = (
            TimmFeatureExtractor(
                backbone=architecture_name(backbone),
                layers=self.teacher.extractor.layers,
                pre_trained=False,
                requires_grad=True,
            )
            if use_encoder_student
            else None
        )
        if self.encoder_student is not None:
            prune_unused_blocks(self.encoder_student)
        self.embedding: nn.Module | None = None
        self.decoder_student: nn.Module | None = None
        if use_decoder_student:
            input_channels = [2 * c for c in channels] if df_source == "both" else None
            reverse = build_reverse_student(backbone, layers, channels, strides, input_channels=input_channels)
            self.embedding, self.decoder_student = reverse.bottleneck, reverse.decoder
        self.anomaly_map = CosineAnomalyMap(mode=anomaly_map_mode)
        self.input_multiple = required_input_multiple(strides)
        self.tiler: Tiler | None = None  # set by anomalib's TilerConfigurationCallback for high-resolution images

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a clear error for sizes the DF embedding and Sd cannot reproduce."""
        check_input_size(height, width, self.input_multiple, what="the DF embedding and Sd")

    def features(self, images: torch.Tensor) -> DSKDFeatures:
        """Teacher, Se and Sd pyramids of ``images``."""
        teacher = self.teacher(images)
        encoder = list(self.encoder_student(images).values()) if self.encoder_student is not None else None
        decoder = None
        if self.embedding is not None and self.decoder_student is not None:
            student = encoder
            if student is not None and self.detach_encoder_student:
                student = [feature.detach() for feature in student]
            if self.df_source == "teacher":
                source = teacher
            elif student is None:
                msg = f"df_source={self.df_source!r} needs the encoder student: set use_encoder_student=True."
                raise RuntimeError(msg)
            elif self.df_source == "student":
                source = student
            else:
                source = [torch.cat([t, s], dim=1) for t, s in zip(teacher, student, strict=True)]
            decoder = list(self.decoder_student(self.embedding(list(source))))
        return DSKDFeatures(teacher=teacher, encoder_student=encoder, decoder_student=decoder)

    def forward(self, images: torch.Tensor) -> DSKDFeatures | InferenceBatch:
        """Training mode: the three pyramids. Eval mode: anomaly map (N, 1, H, W) and score (N, 1).

        With a ``tiler``, the networks run on its tiles (training: the tiles are the batch); in eval mode the
        features are stitched back together before the anomaly map is computed at the full image size.
        """
        size = images.shape[-2:]
        if self.tiler is not None:
            images = self.tiler.tile(images)
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_input_size(images.shape[-2], images.shape[-1])
        features = self.features(images)
        if self.training:
            return features
        students = [s for s in (features.encoder_student, features.decoder_student) if s is not None]
        teachers = [t for _ in students for t in features.teacher]
        students = [f for s in students for f in s]
        if self.tiler is not None:
            teachers, students = [self.tiler.untile(t) for t in teachers], [self.tiler.untile(s) for s in students]
        anomaly_map = self.anomaly_map(teachers, students, size)
        return InferenceBatch(pred_score=anomaly_score(anomaly_map), anomaly_map=anomaly_map)
