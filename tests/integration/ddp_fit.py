# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Fit AAND or DSKD on the tiny dataset with Lightning DDP on CPU (gloo); run by ``test_distributed.py``.

    PYTHONPATH=tests python tests/integration/ddp_fit.py <AAND|DSKD> <devices> <dataset root> <out dir>

``tests`` on ``PYTHONPATH`` gives the shared ``helpers`` module, as pytest's ``pythonpath`` does for the tests.
Lightning's DDP launcher starts this script again, in the same environment, for every other rank. Each rank writes
its final weights to ``<out>/rank<N>.pt``; rank 0 also writes ``<out>/losses.json`` (the last epoch's training
losses).
"""

import json
import sys
import warnings
from pathlib import Path

import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from anomalib_kd_ext.models import AAND, DSKD
from helpers import RESNET18

GLOBAL_BATCH = 4


class LossLog(Callback):
    """Training losses logged at each epoch end."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Keep the ``train_`` metrics of this epoch."""
        del pl_module
        metrics = trainer.callback_metrics
        self.losses.append({k: float(v) for k, v in metrics.items() if k.startswith("train_")})


def main() -> None:
    """Fit AAND or DSKD on ``devices`` CPU processes and write the losses and each rank's weights to ``out``."""
    name, devices, root, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    warnings.filterwarnings("ignore")
    seed_everything(3, workers=True)
    model_class = AAND if name == "AAND" else DSKD
    stages = {"amplification_epochs": 1, "distillation_epochs": 1} if name == "AAND" else {}
    model = model_class(**RESNET18, **stages, pre_processor=model_class.configure_pre_processor(image_size=(64, 64)))
    datamodule = MVTecAD(
        root=root,
        category="tiny",
        train_batch_size=GLOBAL_BATCH // devices,  # the same global batch for 1 and 2 processes
        eval_batch_size=4,
        num_workers=0,
        seed=3,
    )
    log = LossLog()
    engine = Engine(
        default_root_dir=out,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        max_epochs=model.trainer_arguments.get("max_epochs", 2),
        callbacks=[log],
    )
    engine.fit(model=model, datamodule=datamodule)
    rank = engine.trainer.global_rank
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    if name == "AAND":  # the seed of this rank's synthesis stream
        (out / f"synthesis{rank}.json").write_text(json.dumps(model.synthesizer.generator.initial_seed()))
    if rank == 0:
        (out / "losses.json").write_text(json.dumps(log.losses))


if __name__ == "__main__":
    main()
