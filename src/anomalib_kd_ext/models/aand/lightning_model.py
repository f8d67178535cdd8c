# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND: Advancing Pre-trained Teacher - Anomaly Amplification and Normality Distillation.

Tang, Zhou, Li, Dong, Wang, "Advancing Pre-trained Teacher: Towards Robust Feature Discrepancy for
Anomaly Detection", IEEE TIP, `arXiv 2405.02068 <https://arxiv.org/abs/2405.02068>`_.

One ``anomalib train`` run executes both stages of the method:

1. **Anomaly amplification** (``amplification_epochs``): the teacher stays frozen; a Residual Anomaly
   Amplification (RAA) module per level learns, from synthetic anomalies, to push anomalous features
   away from normal ones (focal loss on the gate + amplification loss).
2. **Normality distillation** (``distillation_epochs``): teacher and RAA are frozen; a reverse-distillation
   student (one-class bottleneck + decoder) learns to reconstruct the amplified features of normal
   images (Hard Knowledge Distillation loss).

The number of training epochs is ``amplification_epochs + distillation_epochs`` (``max_epochs`` of the
trainer is set from it). Each stage has its own Adam optimiser and step schedule; both are saved in
checkpoints together with the stage.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_kd_ext.models import AAND
    >>> model = AAND(amplification_epochs=100, distillation_epochs=120)
    >>> engine = Engine()
    >>> engine.fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
    >>> engine.test(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import optim
from torchmetrics.classification import BinaryPrecision, BinaryRecall

from anomalib_kd_ext.models.components import (
    DistillationModuleMixin,
    adam_betas,
    check_choice,
    check_fractions,
    check_range,
)

from .loss import AmplificationLoss, GateFocalLoss, HardKnowledgeDistillationLoss
from .schedule import AMPLIFICATION, DISTILLATION, StageSchedule
from .synthesis import ForegroundMode, SyntheticAnomalyGenerator, find_normalize, reference_rule, synthesis_seed
from .torch_model import AANDModel, AmplificationOutput

logger = logging.getLogger(__name__)


class AAND(DistillationModuleMixin, AnomalibModule):
    """AAND Lightning module: two-stage training in one run.

    Args:
        backbone (str): timm teacher, with weights tag. The paper uses torchvision's WideResNet-50-2.
            Defaults to ``"wide_resnet50_2.tv_in1k"``.
        layers (Sequence[str]): Teacher levels. Defaults to ``("layer1", "layer2", "layer3")``.
        pre_trained (bool): Pre-trained teacher (from ``backbone_weights`` or the hub). Defaults to ``True``.
        backbone_weights (str | None): Local teacher weights file (``.pth``/``.safetensors``). Defaults to ``None``.
        amplification_epochs (int): Length of stage 1. Defaults to ``100``.
        distillation_epochs (int): Length of stage 2. Defaults to ``120``.
        use_raa (bool): Ablation switch; ``False`` skips stage 1 and gives plain reverse distillation.
            Defaults to ``True``.
        use_gate (bool): Ablation switch; ``False`` gives an ungated residual ``F * (1 + s)`` and no focal
            loss. Defaults to ``True``.
        use_hkd (bool): Ablation switch; ``False`` trains stage 2 with RD4AD's loss only. Defaults to ``True``.
        num_memory_items (int): Prototypes per memory bank ``L``. Defaults to ``50``.
        gate_temperature (float): Softmax temperature of the gate. Defaults to ``0.2``.
        k_hard (int): Hard positions per image in the HKD loss ``K_h``. Defaults to ``10``.
        margin (float): Margin ``alpha`` of the amplification loss. Defaults to ``0.3``.
        amplification_weight (float): Weight of the amplification loss against the focal loss. Defaults to ``0.1``.
        focal_alpha (float): Focal loss weight of the anomaly class. Defaults to ``0.8``.
        focal_gamma (float): Focal loss exponent. Defaults to ``2``.
        mask_threshold (float): Binarisation threshold of masks pooled to feature size. Defaults to ``0.3``.
        texture_dir (str | None): Folder of texture images for synthetic anomalies (the paper uses DTD);
            ``None`` uses anomalib's built-in Perlin patterns. Defaults to ``None``.
        anomaly_probability (float): Share of stage-1 images that receive an anomaly. Defaults to ``0.8``.
        foreground (ForegroundMode): Foreground masking of synthetic anomalies: ``"reference"`` (the AAND code's
            per-category rule for MVTec AD / VisA / MVTec 3D categories, ``"auto"`` for any other dataset),
            ``"auto"``, ``"threshold"``, ``"disc"``, ``"box"`` or ``"off"``. Defaults to ``"reference"``.
        foreground_threshold (float): Grey level in [0, 1] for ``foreground="threshold"``. Defaults to ``0.2``.
        foreground_invert (bool): With ``"threshold"``, the foreground is the darker side. Defaults to ``False``.
        learning_rate (float): Adam learning rate of both stages. Defaults to ``0.005``.
        betas (Sequence[float]): Adam betas of both stages. Defaults to ``(0.5, 0.999)``.
        lr_milestones (Sequence[float]): Fractions of each stage after which the learning rate decays; a
            fraction decays only where ``fraction * epochs`` is a whole number, as the reference's float milestones
            (see :func:`~anomalib_kd_ext.models.aand.schedule.step_milestones`). Defaults to ``(0.8, 0.9)``.
        lr_decay (float): Learning-rate factor at each milestone. Defaults to ``0.2``.
        anomaly_map_mode (Literal["add", "multiply"]): Fusion of the levels. Defaults to ``"add"``.
        pre_processor (PreProcessor | bool): Pre-processor; the default resizes to 256x256 and applies
            ImageNet normalisation. Defaults to ``True``.
        post_processor (PostProcessor | bool): Post-processor. Defaults to ``True``.
        evaluator (Evaluator | bool): Evaluator; the default adds AUPRO (FPR limit 0.3) to anomalib's
            image/pixel AUROC and F1. Defaults to ``True``.
        visualizer (Visualizer | bool): Visualizer. Defaults to ``True``.

    Example:
        >>> from anomalib_kd_ext.models import AAND
        >>> model = AAND(backbone="resnet18", pre_trained=False, amplification_epochs=1, distillation_epochs=1)
        >>> model.trainer_arguments["max_epochs"]
        2
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        amplification_epochs: int = 100,
        distillation_epochs: int = 120,
        use_raa: bool = True,
        use_gate: bool = True,
        use_hkd: bool = True,
        num_memory_items: int = 50,
        gate_temperature: float = 0.2,
        k_hard: int = 10,
        margin: float = 0.3,
        amplification_weight: float = 0.1,
        focal_alpha: float = 0.8,
        focal_gamma: float = 2.0,
        mask_threshold: float = 0.3,
        texture_dir: str | None = None,
        anomaly_probability: float = 0.8,
        foreground: ForegroundMode = "reference",
        foreground_threshold: float = 0.2,
        foreground_invert: bool = False,
        learning_rate: float = 0.005,
        betas: Sequence[float] = (0.5, 0.999),
        lr_milestones: Sequence[float] = (0.8, 0.9),
        lr_decay: float = 0.2,
        anomaly_map_mode: Literal["add", "multiply"] = "add",
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        # Every numeric argument is checked before any network is built.
        check_range("amplification_epochs", amplification_epochs, low=0, integer=True)
        check_range("distillation_epochs", distillation_epochs, low=1, integer=True)
        check_range("num_memory_items", num_memory_items, low=1, integer=True)
        check_range("k_hard", k_hard, low=1, integer=True)
        check_range("gate_temperature", gate_temperature, low=0, low_open=True)
        check_range("margin", margin, low=0)
        check_range("amplification_weight", amplification_weight, low=0)
        check_range("focal_alpha", focal_alpha, low=0, high=1)
        check_range("focal_gamma", focal_gamma, low=0)
        check_range("mask_threshold", mask_threshold, low=0, high=1)
        check_range("anomaly_probability", anomaly_probability, low=0, high=1)
        check_range("foreground_threshold", foreground_threshold, low=0, high=1)
        check_range("learning_rate", learning_rate, low=0, low_open=True)
        check_fractions("lr_milestones", lr_milestones)
        check_range("lr_decay", lr_decay, low=0, high=1, low_open=True)
        check_choice("anomaly_map_mode", anomaly_map_mode, ("add", "multiply"))
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.schedule = StageSchedule(amplification_epochs, distillation_epochs, amplification=use_raa)
        self.use_gate = use_gate
        self.learning_rate = learning_rate
        self.betas = adam_betas(betas)
        self.lr_milestones = tuple(lr_milestones)
        self.lr_decay = lr_decay
        self.amplification_weight = amplification_weight
        self.mask_threshold = mask_threshold

        self.model = AANDModel(
            backbone=backbone,
            layers=layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            use_raa=use_raa,
            use_gate=use_gate,
            num_memory_items=num_memory_items,
            gate_temperature=gate_temperature,
            mask_threshold=mask_threshold,
            anomaly_map_mode=anomaly_map_mode,
        )
        self.loss = HardKnowledgeDistillationLoss(k_hard=k_hard, use_hard=use_hkd)
        self.focal_loss = GateFocalLoss(alpha=focal_alpha, gamma=focal_gamma)
        self.amplification_loss = AmplificationLoss(margin=margin)
        self.synthesizer = (
            SyntheticAnomalyGenerator(
                texture_dir=texture_dir,
                probability=anomaly_probability,
                foreground=foreground,
                foreground_threshold=foreground_threshold,
                foreground_invert=foreground_invert,
            )
            if use_raa
            else None
        )
        # Precision and recall of the gate (w > 0.5) against the synthetic masks, over each stage-1 epoch.
        self.gate_precision = BinaryPrecision(threshold=0.5, validate_args=False)
        self.gate_recall = BinaryRecall(threshold=0.5, validate_args=False)
        self.automatic_optimization = False
        self.check_input_size()  # a pre-processor with a fixed size: check it now rather than at fit

    @property
    def amplification_epochs(self) -> int:
        """Length of stage 1 (0 with ``use_raa=False``)."""
        return self.schedule.amplification_epochs

    @property
    def distillation_epochs(self) -> int:
        """Length of stage 2."""
        return self.schedule.distillation_epochs

    @property
    def stage(self) -> str:
        """Training stage of the current epoch: ``"amplification"`` or ``"distillation"``."""
        return self.schedule.stage_at(self.current_epoch)

    def configure_optimizers(self) -> tuple[list[optim.Optimizer], list[optim.lr_scheduler.LRScheduler]]:
        """One Adam optimiser and one step schedule per stage (RAA modules, then student)."""
        trained = {AMPLIFICATION: self.model.raa, DISTILLATION: self.model.student}
        optimizers, schedulers = [], []
        for stage in self.schedule.stages:
            optimizer = optim.Adam(trained[stage].parameters(), lr=self.learning_rate, betas=self.betas)
            milestones = self.schedule.milestones(stage, self.lr_milestones)
            optimizers.append(optimizer)
            schedulers.append(optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=self.lr_decay))
        return optimizers, schedulers

    def on_fit_start(self) -> None:
        """Check the input size and load the textures (and the category's foreground rule) before any work."""
        super().on_fit_start()
        if self.synthesizer is not None and self.amplification_epochs > 0:
            self.synthesizer.load_textures()
            if not self.synthesizer.seeded:  # unless a resumed fit had its state restored from the checkpoint
                # a stream per rank, from the run's seed: under DDP every rank draws other anomalies
                self.synthesizer.seed(synthesis_seed(torch.initial_seed(), self.global_rank))
            if self.synthesizer.foreground == "reference":
                rule = reference_rule(getattr(self.trainer, "datamodule", None))
                self.synthesizer.use_rule(rule)
                logger.info("AAND foreground rule of synthetic anomalies: %s.", rule)
        logger.info(
            "AAND trains %d amplification + %d distillation epochs.",
            self.amplification_epochs,
            self.distillation_epochs,
        )

    def check_input_size(self) -> None:
        """Input size supported by the student, and at least ``k_hard`` positions on the coarsest feature map."""
        super().check_input_size()
        if self.input_size is None:
            return
        height, width = (int(v) for v in self.input_size)
        coarsest = max(self.model.teacher.strides)
        positions = (height // coarsest) * (width // coarsest)
        if self.loss.use_hard and self.loss.k_hard > positions:
            msg = (
                f"k_hard={self.loss.k_hard} exceeds the {positions} positions of the coarsest feature map at "
                f"input size {height}x{width}: lower k_hard or raise the input size."
            )
            raise ValueError(msg)

    def _step(self, loss: torch.Tensor) -> None:
        optimizer = self.optimizers()
        optimizer = optimizer[self.schedule.index_at(self.current_epoch)] if isinstance(optimizer, list) else optimizer
        optimizer.zero_grad()
        # always: under DDP every rank must take part in the gradient all-reduce, also with a zero loss
        self.manual_backward(loss)
        optimizer.step()

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Train the RAA modules (stage 1) or the student (stage 2) on one batch."""
        del args, kwargs  # These variables are not used.
        images = self.batch_images(batch)
        if self.stage == AMPLIFICATION:
            loss = self._amplification_step(images)
        else:
            amplified, reconstructed = self.model(images)
            loss = self.loss(amplified, reconstructed)
            name = "train_hkd_loss" if self.loss.use_hard else "train_rd_loss"  # RD4AD's loss when HKD is off
            self.log(name, loss.detach(), on_epoch=True, on_step=False, prog_bar=True, batch_size=len(images))
        self._step(loss)
        self.log("train_loss", loss.detach(), on_epoch=True, on_step=False, prog_bar=True, batch_size=len(images))
        return {"loss": loss}

    def amplification_losses(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, AmplificationOutput]:
        """Stage 1 on a batch of normal images: synthetic anomalies, the RAA forward and its losses.

        Returns:
            The stage's loss (weighted amplification loss plus, with the gate, the focal loss), the amplification
            loss alone, and the forward's output (features, gates and masks per level).
        """
        if self.synthesizer is None:
            msg = "Stage 1 needs the synthetic anomaly generator, but this model was built with use_raa=False."
            raise RuntimeError(msg)
        synthetic = self.synthesizer(images, normalize=find_normalize(getattr(self.pre_processor, "transform", None)))
        output = self.model.amplification_forward(synthetic.images, synthetic.masks, synthetic.foreground)
        amplification = self.amplification_loss(output.features, output.amplified, output.masks, output.foreground)
        loss = self.amplification_weight * amplification
        if self.use_gate:
            loss = loss + self.focal_loss([gate for gate in output.gates if gate is not None], output.masks)
        return loss, amplification, output

    def _amplification_step(self, images: torch.Tensor) -> torch.Tensor:
        loss, amplification, output = self.amplification_losses(images)
        if self.use_gate:
            gates = [gate for gate in output.gates if gate is not None]
            for gate, mask in zip(gates, output.masks, strict=True):
                self.gate_precision.update(gate.detach().flatten(), mask.flatten().long())
                self.gate_recall.update(gate.detach().flatten(), mask.flatten().long())
            self.log("train_gate_precision", self.gate_precision, on_epoch=True, on_step=False)
            self.log("train_gate_recall", self.gate_recall, on_epoch=True, on_step=False)
        self.log(
            "train_amplification_loss",
            amplification.detach(),
            on_epoch=True,
            on_step=False,
            batch_size=len(images),
        )
        return loss

    def on_train_epoch_end(self) -> None:
        """Step the learning-rate schedule of the stage."""
        schedulers = self.lr_schedulers()
        index = self.schedule.index_at(self.current_epoch)
        scheduler = schedulers[index] if isinstance(schedulers, list) else schedulers
        if scheduler is not None:
            scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the training stage next to the weights."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["aand_stage"] = self.stage

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Both stages run in one fit: ``max_epochs`` is the sum of the stage lengths."""
        return {"max_epochs": self.schedule.max_epochs, "num_sanity_val_steps": 0}
