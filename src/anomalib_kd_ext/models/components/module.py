# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""What the Lightning modules of AAND and DSKD share, written once.

:class:`DistillationModuleMixin` is put before ``AnomalibModule`` in the bases. Its model (``self.model``) is a
torch module with ``check_input_size(height, width)`` that, in eval mode, returns anomalib's ``InferenceBatch``.
It gives both models the same validation step, learning type and evaluator (anomalib's metrics plus AUPRO), checks
the input size of the pre-processor when training starts, and an example input of that size, with which
Lightning's model summary reports the FLOPs of a forward pass. Its exports are anomalib's, checked and staged, with
the anomaly-map tail in FP32 under INT8 (:class:`~.export.GuardedExportMixin`).
"""

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from lightning.pytorch.utilities.types import STEP_OUTPUT

from .evaluator import kd_evaluator
from .export import GuardedExportMixin


class DistillationModuleMixin(GuardedExportMixin):
    """Validation step, learning type, evaluator, input-size check, example input and checked exports of a KD model."""

    model: torch.nn.Module
    input_size: tuple[int, int] | None

    _example_input: torch.Tensor | None = None

    @property
    def example_input_array(self) -> torch.Tensor | None:
        """One black image of the pre-processor's input size (``None`` without a fixed size), unless one was set."""
        if self._example_input is not None or self.input_size is None:
            return self._example_input
        return torch.zeros(1, 3, *(int(v) for v in self.input_size))

    @example_input_array.setter
    def example_input_array(self, example: torch.Tensor | None) -> None:
        self._example_input = example

    @staticmethod
    def batch_images(batch: Batch) -> torch.Tensor:
        """The images of a batch; a batch without images is an error that names the cause."""
        if batch.image is None:
            msg = "The batch holds no images: the datamodule must return image batches."
            raise ValueError(msg)
        return batch.image

    def check_input_size(self) -> None:
        """Raise a clear error if the pre-processor's input size does not fit the model (no fixed size: nothing)."""
        if self.input_size is not None:
            self.model.check_input_size(*(int(v) for v in self.input_size))

    def on_fit_start(self) -> None:
        """Check the input size before any work is done."""
        super().on_fit_start()  # type: ignore[misc]
        self.check_input_size()

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Predict anomaly maps and scores of a validation batch."""
        del args, kwargs  # These variables are not used.
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    @property
    def learning_type(self) -> LearningType:
        """The models learn from normal images only."""
        return LearningType.ONE_CLASS

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """Anomalib's default metrics plus AUPRO (FPR limit 0.3), which the papers report as PRO."""
        return kd_evaluator()
