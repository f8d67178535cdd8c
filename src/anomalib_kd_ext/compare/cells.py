# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""One cell of a comparison: one model trained, tested and scored on one dataset with one seed, in this process.

A cell is described by :class:`Cell` (JSON-serialisable, so that the runner can hand it to a child process:
``python -m anomalib_kd_ext.compare.cells <cell.json> <result.json>``). :func:`run_cell` trains the model through
anomalib's ``Engine``, tests it where the test split has defective images (anomalib's metrics), scores every test
image through the model's own ``forward`` (pre-processing, model, post-processing: what an export computes) and
returns the cell's row (:data:`COLUMNS`).

Two validation protocols (:class:`Settings`):

- ``false_alarm_rate`` set (the compare command): ``val_split_ratio`` of the good training images are held out and
  set the image threshold at that false-alarm rate (:class:`~anomalib_kd_ext.post_processing.FalseAlarmPostProcessor`);
  the row has the recall on defective test images and the share of good test images flagged at that threshold,
  neither of which the threshold saw;
- ``false_alarm_rate=None`` (the benchmark grids so far): validation on the test split, which sets anomalib's
  F1-adaptive threshold and the normalisation (no model selection); no recall column.
"""

import csv
import json
import logging
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from anomalib_kd_ext.compare.spec import COLUMNS, METRICS, MODELS, PAPER_TEACHERS, PROGRESS, Cell, DatasetSpec, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anomalib.data import AnomalibDataModule
    from anomalib.models import AnomalibModule

logger = logging.getLogger(__name__)


def hardware(device: torch.device | str = "cpu") -> str:
    """What a run ran on, read at run time: ``x86_64, 2 threads, CPU``, or the GPU's name for a CUDA device.

    The device is the one the run used (a run on the CPU of a machine with a GPU is labelled with the CPU).
    """
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, GPU"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, CPU"


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


def report_progress(**values: object) -> None:
    """Print one progress line for the runner (``@@progress {"epoch": 3, "epochs": 10}``)."""
    print(PROGRESS + json.dumps(values), flush=True)


class ProgressLines(Callback):
    """Prints a progress line after every training epoch (the runner turns them into its progress bar)."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: PLR6301  # Lightning hook
        """Epoch done of all epochs, with the model's stage where it has one."""
        report_progress(
            phase="train",
            epoch=trainer.current_epoch + 1,
            epochs=trainer.max_epochs,
            stage=getattr(pl_module, "stage", None),
        )


def make_datamodule(
    dataset: DatasetSpec,
    settings: Settings,
    seed: int,
    **overrides: object,
) -> "AnomalibDataModule":
    """The anomalib datamodule of ``dataset`` with the validation protocol of ``settings`` (see the module).

    ``overrides`` replace the shared datamodule arguments (e.g. ``val_split_mode="from_train"``).
    """
    from anomalib.data import Folder, MVTec3D, MVTecAD, Visa

    from anomalib_kd_ext.data import ELPV

    split: dict[str, object] = (
        {"val_split_mode": "same_as_test"}
        if settings.false_alarm_rate is None
        else {"val_split_mode": "from_train", "val_split_ratio": settings.val_split_ratio}
    )
    common: dict[str, Any] = {
        "train_batch_size": settings.batch_size,
        "eval_batch_size": settings.batch_size,
        "num_workers": settings.num_workers,
        "seed": seed,
        **split,
        **overrides,
    }
    root = Path(dataset.root) if dataset.root is not None else None
    if dataset.kind == "elpv":
        return ELPV(cell_type=dataset.category, max_train_images=settings.elpv_max_train, **common)
    if root is None:
        msg = f"dataset {dataset.kind}:{dataset.category} needs a root folder"
        raise ValueError(msg)
    kinds: dict[str, Any] = {"mvtec": MVTecAD, "visa": Visa, "mvtec3d": MVTec3D}
    if dataset.kind in kinds:
        return kinds[dataset.kind](root=root, category=dataset.category, **common)
    return Folder(
        name=dataset.category,
        root=root,
        normal_dir=dataset.normal_dir,
        normal_test_dir=dataset.normal_test_dir,
        abnormal_dir=dataset.abnormal_dir,
        mask_dir=dataset.mask_dir,
        **common,
    )


def make_model(name: str, settings: Settings, work_dir: Path) -> "AnomalibModule":
    """Model ``name`` of :data:`MODELS` with the teacher, image size and threshold of ``settings``."""
    from anomalib.models import ReverseDistillation, Stfpm

    from anomalib_kd_ext.models import AAND, DSKD

    family, switches = MODELS[name]
    size = (settings.image_size, settings.image_size)
    common: dict[str, Any] = {"visualizer": False}  # the comparison draws its own picture
    if settings.false_alarm_rate is not None:
        from anomalib_kd_ext.post_processing import FalseAlarmPostProcessor

        common["post_processor"] = FalseAlarmPostProcessor(false_alarm_rate=settings.false_alarm_rate)
    if family == "Stfpm":  # anomalib's Stfpm reports the metrics of our models
        common["evaluator"] = DSKD.configure_evaluator()
    if settings.teacher == "paper":
        teacher: dict[str, Any] = PAPER_TEACHERS["RD" if name == "RD" else family]
        if name == "RD":
            return ReverseDistillation(
                **teacher,
                **common,
                pre_processor=ReverseDistillation.configure_pre_processor(size),
            )
        model_class: Any = {"Stfpm": Stfpm, "AAND": AAND, "DSKD": DSKD}[family]
        return model_class(**teacher, **switches, **common, pre_processor=model_class.configure_pre_processor(size))
    from anomalib_kd_ext.teachers import LITE0_LAYERS, LITE0_PACKAGE_WEIGHTS

    if family == "Stfpm":
        from anomalib_kd_ext.models.components.teacher import save_timm_local_dir

        backbone = save_timm_local_dir("tf_efficientnet_lite0", LITE0_PACKAGE_WEIGHTS, work_dir / "lite0_local_dir")
        return Stfpm(
            backbone=backbone,
            layers=list(LITE0_LAYERS),
            **common,
            pre_processor=Stfpm.configure_pre_processor(size),
        )
    lite0: dict[str, Any] = {
        "backbone": "tf_efficientnet_lite0",
        "layers": list(LITE0_LAYERS),
        "backbone_weights": LITE0_PACKAGE_WEIGHTS,
    }
    if family == "AAND":
        return AAND(
            **lite0,
            amplification_epochs=settings.epochs,
            distillation_epochs=settings.epochs,
            texture_dir=settings.texture_dir,
            **switches,
            **common,
            pre_processor=AAND.configure_pre_processor(size),
        )
    return DSKD(**lite0, **switches, **common, pre_processor=DSKD.configure_pre_processor(size))


MAP_SIZE = 64  # side of the anomaly maps a cell keeps for the comparison's picture


def score_test_images(model: "AnomalibModule", datamodule: "AnomalibDataModule") -> dict[str, Any]:
    """Every test image through ``model.forward`` (pre-processing, model, post-processing), as an export does.

    Returns the image paths, labels (1: defective), normalised scores (0.5 is the image threshold), predicted
    labels and the normalised anomaly maps at :data:`MAP_SIZE` px (float16; 0.5 is the pixel threshold).
    """
    paths: list[str] = []
    labels, scores, flagged, maps = [], [], [], []
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for batch in datamodule.test_dataloader():
            output = model(batch.image.to(device))
            paths += [str(path) for path in batch.image_path]
            labels.append(batch.gt_label.cpu().long())
            scores.append(output.pred_score.float().flatten().cpu())
            flagged.append(output.pred_label.flatten().cpu().bool())
            anomaly_map = output.anomaly_map.float().reshape(-1, 1, *output.anomaly_map.shape[-2:])
            small = torch.nn.functional.interpolate(anomaly_map, size=(MAP_SIZE, MAP_SIZE), mode="area")
            maps.append(small[:, 0].half().cpu())
    if not paths:
        return {"paths": [], "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    return {
        "paths": paths,
        "labels": torch.cat(labels),
        "scores": torch.cat(scores),
        "flagged": torch.cat(flagged),
        "maps": torch.cat(maps),
    }


def validation_good_images(datamodule: "AnomalibDataModule") -> int:
    """Number of good images in the validation split."""
    samples = datamodule.val_data.samples
    return int((samples["label_index"] == 0).sum())


def run_cell(cell: Cell) -> dict[str, Any]:
    """Train, test and score one cell in this process; return its row (:data:`COLUMNS`)."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from anomalib_kd_ext.data import ImageCache

    settings, dataset = cell.settings, cell.dataset
    work_dir = Path(cell.work_dir)
    seed_everything(cell.seed, workers=True)
    model = make_model(cell.model, settings, work_dir)
    datamodule = make_datamodule(dataset, settings, cell.seed)
    total_epochs = model.trainer_arguments.get("max_epochs", settings.epochs)
    timer = EpochTimer()
    callbacks: list[Callback] = [timer, ProgressLines()]
    logger = CSVLogger(save_dir=str(work_dir), name="logs", version=0)
    engine = Engine(
        default_root_dir=work_dir,
        callbacks=[ImageCache(), *callbacks] if settings.image_cache else callbacks,
        logger=logger,
        accelerator=settings.accelerator,
        devices=1,
        max_epochs=total_epochs,
        check_val_every_n_epoch=total_epochs,
        enable_progress_bar=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    metrics: Mapping[str, float] = {}
    if dataset.has_defects:
        report_progress(phase="test")
        metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    report_progress(phase="score")
    model.to(engine.trainer.strategy.root_device)  # Lightning moved it back to the CPU after fitting / testing
    scored = score_test_images(model, datamodule)
    labels = scored["labels"]
    row: dict[str, Any] = {
        "model": cell.model,
        "dataset": dataset.kind,
        "category": dataset.category,
        "seed": cell.seed,
        "teacher": settings.teacher_name,
        "epochs": settings.epochs,
        "image_size": settings.image_size,
        "batch_size": settings.batch_size,
        **{name: metrics.get(name) for name in METRICS},
        "false_alarm_rate": settings.false_alarm_rate,
        "test_good_images": int((labels == 0).sum()),
        "test_defective_images": int((labels == 1).sum()),
        "train_seconds": round(sum(timer.seconds.values()), 1),
        "hardware": hardware(engine.trainer.strategy.root_device),
    }
    image_threshold = float(getattr(model.post_processor, "image_threshold", float("nan")))
    if settings.false_alarm_rate is not None:
        row["validation_good_images"] = validation_good_images(datamodule)
        row["image_threshold"] = image_threshold
        if row["test_defective_images"]:
            row["recall_at_false_alarm"] = round(float(scored["flagged"][labels == 1].float().mean()), 4)
        if row["test_good_images"]:
            row["good_flagged"] = round(float(scored["flagged"][labels == 0].float().mean()), 4)
    if cell.curves is not None:
        Path(cell.curves).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(str(logger.log_dir)) / "metrics.csv", cell.curves)
    if cell.predictions is not None and scored["paths"]:
        save_predictions(scored, Path(cell.predictions), image_threshold)
    row["inference_ms_per_image"] = round(inference_ms(model.model.cpu(), image_size=settings.image_size), 1)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if platform.system() == "Darwin" else 1024
    row["peak_memory_MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20)
    return {column: row.get(column) for column in COLUMNS}


def save_predictions(scored: dict[str, Any], stem: Path, image_threshold: float) -> None:
    """Per-image scores as ``<stem>.csv`` and everything, maps included, as ``<stem>.pt``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with stem.with_name(stem.name + ".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "label", "pred_score", "pred_label"])
        for path, label, score, flagged in zip(
            scored["paths"], scored["labels"].tolist(), scored["scores"].tolist(), scored["flagged"].tolist(),
            strict=True,
        ):  # fmt: skip
            writer.writerow([path, label, f"{score:.9g}", int(flagged)])
    torch.save({**scored, "image_threshold": image_threshold}, stem.with_name(stem.name + ".pt"))


def main(argv: list[str] | None = None) -> None:
    """``python -m anomalib_kd_ext.compare.cells <cell.json> <result.json>``: run one cell, write its row."""
    cell_path, result_path = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO)
    row = run_cell(Cell.from_json(Path(cell_path).read_text(encoding="utf-8")))
    Path(result_path).write_text(json.dumps(row), encoding="utf-8")


if __name__ == "__main__":
    main()
