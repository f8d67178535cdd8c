# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DSKD: Dual-Student Knowledge Distillation Networks for Unsupervised Anomaly Detection.

Liyi Yao, Shaobing Gao, `arXiv 2402.00448 <https://arxiv.org/abs/2402.00448>`_ (2024).

A frozen ImageNet teacher is matched, level by level, by two students of inverted structures: an
encoder-like student (Se, the teacher's topology, fed the image) and a decoder-like student (Sd, a
reversed network fed by a deep-feature embedding through which the two students interact). No code
of the paper is public; every choice the paper leaves open is a constructor argument (see README.md).

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_kd_ext.models import DSKD
    >>> model = DSKD()
    >>> engine = Engine(max_epochs=200)
    >>> engine.fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

from collections.abc import Sequence
from typing import Any, Literal

from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import optim

from anomalib_kd_ext.models.components import DistillationModuleMixin, adam_betas, check_choice, check_range

from .loss import DualStudentLoss
from .torch_model import DFSource, DSKDModel


class DSKD(DistillationModuleMixin, AnomalibModule):
    """DSKD Lightning module.

    Args:
        backbone (str): timm teacher, with weights tag; Se takes the same architecture, randomly initialised.
            Defaults to ``"resnet18.tv_in1k"`` (the paper's headline backbone, torchvision ImageNet weights).
        layers (Sequence[str]): Levels matched by both students. Defaults to ``("layer1", "layer2", "layer3")``.
        pre_trained (bool): Pre-trained teacher (from ``backbone_weights`` or the hub). Defaults to ``True``.
        backbone_weights (str | None): Local teacher weights file (``.pth``/``.safetensors``, or
            ``package:<module>/<path>``). Defaults to ``None``.
        df_source (Literal["student", "teacher", "both"]): Input of the DF embedding. Defaults to ``"student"``.
        use_encoder_student (bool): Keep Se. Defaults to ``True``.
        use_decoder_student (bool): Keep the DF embedding and Sd. Defaults to ``True``.
        detach_encoder_student (bool): Stop Sd's loss from reaching Se through DF. Defaults to ``False``.
        student_weights (Sequence[float]): Loss weights of (Se, Sd). Defaults to ``(1.0, 1.0)``.
        learning_rate (float): Adam learning rate. Defaults to ``0.005``.
        betas (Sequence[float]): Adam betas. Defaults to ``(0.5, 0.999)``.
        anomaly_map_mode (Literal["add", "multiply"]): Fusion over levels and students. Defaults to ``"add"``.
        pre_processor (PreProcessor | bool): Pre-processor; the default resizes to 256x256 with ImageNet
            normalisation. Defaults to ``True``.
        post_processor (PostProcessor | bool): Post-processor. Defaults to ``True``.
        evaluator (Evaluator | bool): Evaluator; the default adds AUPRO to anomalib's metrics. Defaults to ``True``.
        visualizer (Visualizer | bool): Visualizer. Defaults to ``True``.

    Example:
        >>> from anomalib_kd_ext.models import DSKD
        >>> model = DSKD(backbone="resnet18", pre_trained=False, df_source="both")
    """

    def __init__(
        self,
        backbone: str = "resnet18.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        df_source: DFSource = "student",
        use_encoder_student: bool = True,
        use_decoder_student: bool = True,
        detach_encoder_student: bool = False,
        student_weights: Sequence[float] = (1.0, 1.0),
        learning_rate: float = 0.005,
        betas: Sequence[float] = (0.5, 0.999),
        anomaly_map_mode: Literal["add", "multiply"] = "add",
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        # Every argument is checked before any network is built.
        check_range("learning_rate", learning_rate, low=0, low_open=True)
        check_choice("anomaly_map_mode", anomaly_map_mode, ("add", "multiply"))
        for weight in student_weights:
            check_range("each of student_weights", weight, low=0)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.learning_rate = learning_rate
        self.betas = adam_betas(betas)
        self.model = DSKDModel(
            backbone=backbone,
            layers=layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            df_source=df_source,
            use_encoder_student=use_encoder_student,
            use_decoder_student=use_decoder_student,
            detach_encoder_student=detach_encoder_student,
            anomaly_map_mode=anomaly_map_mode,
        )
        self.loss = DualStudentLoss(student_weights=student_weights)

    def configure_optimizers(self) -> optim.Adam:
        """Adam over Se, the DF embedding and Sd (the teacher is frozen)."""
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        return optim.Adam(parameters, lr=self.learning_rate, betas=self.betas)

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Match both students to the teacher on one batch of normal images."""
        del args, kwargs  # These variables are not used.
        images = self.batch_images(batch)
        losses = self.loss(self.model(images))
        # No logger=True: Lightning logs anyway when a logger is configured, and warns when it is not.
        size = len(images)
        self.log("train_loss", losses["loss"].detach(), on_epoch=True, prog_bar=True, batch_size=size)
        self.log("train_encoder_loss", losses["encoder_loss"].detach(), on_epoch=True, on_step=False, batch_size=size)
        self.log("train_decoder_loss", losses["decoder_loss"].detach(), on_epoch=True, on_step=False, batch_size=size)
        return {"loss": losses["loss"]}

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping, no sanity validation; the number of epochs is the user's."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}
