# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""KD models side by side: a grid of models x datasets x seeds, trained and tested through anomalib's Engine.

Every cell uses the same teacher, image size, batch size, seed and epoch budget, and runs in its own process (so the
peak memory column is that cell's, and one crashing cell does not end the grid). A finished cell is a row of
``<out>/grid.csv``; a rerun with the same ``--out`` skips the cells already there (resume after an interruption; an
interrupted cell starts again from scratch). After each cell the Markdown table (mean ± std over seeds) and the PNG
chart are rewritten from the CSV. Each cell's learning curves (the per-epoch losses the model logs, and AAND's
stage-1 gate precision and recall) are copied to ``<out>/curves/<model>_<dataset>_<category>_seed<seed>_e<epochs>.csv``
and summarised in ``grid.md``.

Models (``--models``; teacher ``tf_efficientnet_lite0`` with real ImageNet weights from the ``lite0`` extra):

- ``Stfpm``: anomalib's Stfpm, given the same teacher as a timm ``local-dir:``;
- ``RD``: reverse distillation (RD4AD: OCBE bottleneck, reverse student, RD4AD's loss) = AAND with RAA and HKD off.
  anomalib's ``ReverseDistillation`` builds its decoder for ResNets only, so with the Lite0 teacher this is the
  matched-teacher stand-in; with ``--teacher paper`` (WideResNet-50-2) anomalib's own model is used;
- ``AAND``, ``AAND_raa_off`` (HKD on, no stage 1), ``AAND_hkd_off`` (RAA on, RD4AD's loss);
- ``DSKD``, ``DSKD_se_only``, ``DSKD_sd_only``, ``DSKD_df_teacher`` / ``DSKD_df_both`` (DF fed by the teacher / both).

``--epochs`` is the number of training epochs of every model; AAND's two stages get ``--epochs`` each (the
distillation stage, the part every model shares, has the same length everywhere). Training validates once, after
the last epoch (validation on the test split only sets the thresholds and normalisation; no model selection).

Datasets (``--datasets``): ``mvtec:<category>``, ``visa:<category>``, ``mvtec3d:<category>`` (roots from
``--mvtec-root`` etc.; skipped with a message when absent), ``battery_weld`` (``../shared/datasets`` Folder layout),
``folder:<name>=<root>`` (any Folder dataset with ``train/good``, ``test/good``, ``test/defect`` and optional
``ground_truth/defect``) and ``elpv`` (the solar cells of the PyPI package ``elpv-dataset``, image-level only;
split described in ``anomalib_kd_ext.data.elpv``). Each image is decoded and resized once
(:class:`anomalib_kd_ext.data.ImageCache`; ``--no-image-cache`` decodes it every epoch in ``--num-workers`` workers, as
the grids before the cache did: the same tensors, so the same metrics).

Example (the small CPU grid of the README; run from the repository root):

    python -m benchmarks grid --models Stfpm RD AAND DSKD --datasets mvtec:bottle battery_weld elpv \
        --seeds 0 --epochs 3 --out benchmarks/results/grid_small_cpu
"""

import argparse
import csv
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.tables import write_csv

if TYPE_CHECKING:
    from anomalib.data import AnomalibDataModule
    from anomalib.models import AnomalibModule

PAPER_TEACHERS = {  # per model family, the backbone of its paper
    "Stfpm": {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]},
    "RD": {"backbone": "wide_resnet50_2", "layers": ["layer1", "layer2", "layer3"]},
    "AAND": {"backbone": "wide_resnet50_2.tv_in1k", "layers": ["layer1", "layer2", "layer3"]},
    "DSKD": {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]},
}
MODELS = {
    "Stfpm": ("Stfpm", {}),
    "RD": ("AAND", {"use_raa": False, "use_hkd": False}),
    "AAND": ("AAND", {}),
    "AAND_raa_off": ("AAND", {"use_raa": False}),
    "AAND_hkd_off": ("AAND", {"use_hkd": False}),
    "DSKD": ("DSKD", {}),
    "DSKD_se_only": ("DSKD", {"use_decoder_student": False}),
    "DSKD_sd_only": ("DSKD", {"use_encoder_student": False, "df_source": "teacher"}),
    "DSKD_df_teacher": ("DSKD", {"df_source": "teacher"}),
    "DSKD_df_both": ("DSKD", {"df_source": "both"}),
}
COLUMNS = [
    "model",
    "dataset",
    "category",
    "seed",
    "teacher",
    "epochs",
    "image_size",
    "batch_size",
    "image_AUROC",
    "image_F1Score",
    "pixel_AUROC",
    "pixel_AUPRO",
    "train_seconds",
    "peak_memory_MB",
    "inference_ms_per_image",
    "hardware",
]
METRICS = ["image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_AUPRO"]
KEY = ("model", "dataset", "category", "seed", "teacher", "epochs", "image_size")
KEY_OF_CURVE = ("model", "dataset", "category", "seed", "epochs")


def parse_dataset(spec: str, args: argparse.Namespace) -> tuple[str, str, Path | None]:
    """``spec`` → (dataset, category, root or None for the installed ELPV package)."""
    kind, _, rest = spec.partition(":")
    roots = {"mvtec": args.mvtec_root, "visa": args.visa_root, "mvtec3d": args.mvtec3d_root}
    if kind in roots and rest:
        return kind, rest, Path(roots[kind])
    if spec == "battery_weld":
        return "folder", "battery_weld", Path(args.battery_weld_root)
    if kind == "folder" and "=" in rest:
        name, _, root = rest.partition("=")
        return "folder", name, Path(root)
    if spec in {"elpv", "elpv:mono", "elpv:poly", "elpv:all"}:
        return "elpv", rest or "mono", None
    msg = (
        f"unknown dataset {spec!r}: use mvtec:<category>, visa:<category>, mvtec3d:<category>, battery_weld, "
        "folder:<name>=<root> or elpv[:mono|poly|all]"
    )
    raise ValueError(msg)


def dataset_missing(dataset: str, category: str, root: Path | None) -> str | None:
    """Why the dataset cannot be used here, or ``None``."""
    if dataset == "elpv":
        import importlib.util

        return None if importlib.util.find_spec("elpv_dataset") else "`pip install elpv-dataset` (extra `elpv`)"
    folder = root / category if dataset in {"mvtec", "visa", "mvtec3d"} else root
    return None if folder.is_dir() else f"{folder} not found"


def make_datamodule(
    dataset: str,
    category: str,
    root: Path | None,
    args: argparse.Namespace,
    seed: int,
    **overrides: object,
) -> "AnomalibDataModule":
    """The anomalib datamodule of one dataset; validation on the test split (it only sets thresholds).

    ``overrides`` replace the shared datamodule arguments (e.g. ``val_split_mode="from_train"``).
    """
    from anomalib.data import Folder, MVTec3D, MVTecAD, Visa

    from anomalib_kd_ext.data import ELPV

    common = {
        "train_batch_size": args.batch_size,
        "eval_batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "val_split_mode": "same_as_test",
        "seed": seed,
    } | overrides
    if dataset == "mvtec":
        return MVTecAD(root=root, category=category, **common)
    if dataset == "visa":
        return Visa(root=root, category=category, **common)
    if dataset == "mvtec3d":
        return MVTec3D(root=root, category=category, **common)
    if dataset == "elpv":
        return ELPV(cell_type=category, max_train_images=args.elpv_max_train, **common)
    mask_dir = "ground_truth/defect" if (root / "ground_truth/defect").is_dir() else None
    return Folder(
        name=category,
        root=root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        mask_dir=mask_dir,
        **common,
    )


def make_model(name: str, args: argparse.Namespace, work_dir: Path) -> "AnomalibModule":
    """One model of the grid with the chosen teacher and image size."""
    from anomalib.models import ReverseDistillation, Stfpm

    from anomalib_kd_ext.models import AAND, DSKD
    from anomalib_kd_ext.models.components import LITE0_LAYERS, LITE0_PACKAGE_WEIGHTS

    family, switches = MODELS[name]
    size = (args.image_size, args.image_size)
    if args.teacher == "paper":
        teacher = PAPER_TEACHERS["RD" if name == "RD" else family]
        if name == "RD":
            return ReverseDistillation(**teacher, pre_processor=ReverseDistillation.configure_pre_processor(size))
        model_class = {"Stfpm": Stfpm, "AAND": AAND, "DSKD": DSKD}[family]
        extra = {"evaluator": DSKD.configure_evaluator()} if family == "Stfpm" else {}
        return model_class(**teacher, **switches, **extra, pre_processor=model_class.configure_pre_processor(size))
    if family == "Stfpm":
        from anomalib_kd_ext.models.components.teacher import save_timm_local_dir

        backbone = save_timm_local_dir("tf_efficientnet_lite0", LITE0_PACKAGE_WEIGHTS, work_dir / "lite0_local_dir")
        return Stfpm(
            backbone=backbone,
            layers=list(LITE0_LAYERS),
            evaluator=DSKD.configure_evaluator(),
            pre_processor=Stfpm.configure_pre_processor(size),
        )
    teacher = {
        "backbone": "tf_efficientnet_lite0",
        "layers": list(LITE0_LAYERS),
        "backbone_weights": LITE0_PACKAGE_WEIGHTS,
    }
    if family == "AAND":
        stages = {"amplification_epochs": args.epochs, "distillation_epochs": args.epochs}
        texture = {"texture_dir": args.texture_dir}
        return AAND(**teacher, **stages, **texture, **switches, pre_processor=AAND.configure_pre_processor(size))
    return DSKD(**teacher, **switches, pre_processor=DSKD.configure_pre_processor(size))


def run_cell(cell: dict, args: argparse.Namespace) -> dict:
    """Train and test one cell (in this process); return its row."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from anomalib_kd_ext.data import ImageCache
    from benchmarks.common import EpochTimer, hardware, inference_ms

    dataset, category, root = parse_dataset(cell["dataset_spec"], args)
    work_dir = Path(args.work_dir) / f"{cell['model']}_{dataset}_{category}_seed{cell['seed']}"
    seed_everything(cell["seed"], workers=True)
    model = make_model(cell["model"], args, work_dir)
    datamodule = make_datamodule(dataset, category, root, args, cell["seed"])
    total_epochs = model.trainer_arguments.get("max_epochs", args.epochs)
    timer = EpochTimer()
    engine = Engine(
        default_root_dir=work_dir,
        callbacks=[ImageCache(), timer] if args.image_cache else [timer],
        logger=CSVLogger(save_dir=str(work_dir), name="logs", version=0),
        accelerator=args.accelerator,
        devices=1,
        max_epochs=total_epochs,
        check_val_every_n_epoch=total_epochs,
        enable_progress_bar=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    curves = Path(args.out) / "curves"
    curves.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        Path(engine.trainer.logger.log_dir) / "metrics.csv",
        curves / curve_name(cell["model"], dataset, category, cell["seed"], args.epochs),
    )
    teacher = "paper" if args.teacher == "paper" else "tf_efficientnet_lite0 (ImageNet, lite0 extra)"
    row = {
        "model": cell["model"],
        "dataset": dataset,
        "category": category,
        "seed": cell["seed"],
        "teacher": teacher,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        **{name: metrics.get(name) for name in METRICS},
        "train_seconds": round(sum(timer.seconds.values()), 1),
        "inference_ms_per_image": round(inference_ms(model.model.cpu(), image_size=args.image_size), 1),
        "hardware": hardware(engine.trainer.strategy.root_device),
    }
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if platform.system() == "Darwin" else 1024
    row["peak_memory_MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20)
    return {column: row.get(column) for column in COLUMNS}


def curve_name(model: str, dataset: str, category: str, seed: int, epochs: int) -> str:
    """File name of a cell's learning curves under ``<out>/curves``."""
    return f"{model}_{dataset}_{category}_seed{seed}_e{epochs}.csv"


# Per-epoch loss of the (last) distillation stage, first column found: AAND's HKD / RD4AD loss, else the only loss.
LOSS_COLUMNS = ("train_hkd_loss", "train_rd_loss", "train_loss_epoch", "train_loss")


def read_curve(path: Path) -> dict[str, float | None] | None:
    """Summary of one cell's curves: distillation loss at the first and last epoch, AAND's stage-1 gate and loss."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        epochs = list(csv.DictReader(handle))

    def column(name: str) -> list[float]:
        return [float(epoch[name]) for epoch in epochs if epoch.get(name)]

    loss = next((values for name in LOSS_COLUMNS if (values := column(name))), [])
    amplification = column("train_amplification_loss")
    precision, recall = column("train_gate_precision"), column("train_gate_recall")
    return {
        "loss_first": loss[0] if loss else None,
        "loss_last": loss[-1] if loss else None,
        "loss_ratio": loss[-1] / loss[0] if loss and loss[0] else None,
        "amplification_first": amplification[0] if amplification else None,
        "amplification_last": amplification[-1] if amplification else None,
        "gate_precision": precision[-1] if precision else None,
        "gate_recall": recall[-1] if recall else None,
    }


def curve_lines(groups: dict[tuple[str, str], list[dict]], out: Path) -> list[str]:
    """Markdown table of the learning curves (mean ± std over the cells whose curves are in ``<out>/curves``)."""
    lines = [
        "Learning curves (`curves/`; losses of different models are different quantities: compare a model's first and",
        "last epoch, not models; gate precision and recall are AAND's stage-1 gate at the end of stage 1):",
        "",
        (
            "| dataset | model | curves | loss, first epoch | loss, last epoch | last / first | gate precision "
            "| gate recall | amplification loss, first → last |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, model), group in sorted(groups.items()):
        curves = [read_curve(out / "curves" / curve_name(*(row[k] for k in KEY_OF_CURVE))) for row in group]
        curves = [curve for curve in curves if curve is not None]
        if not curves:
            continue
        cells = [mean_std([curve[key] for curve in curves]) for key in ("loss_first", "loss_last", "loss_ratio")]
        cells += [mean_std([curve[key] for curve in curves]) for key in ("gate_precision", "gate_recall")]
        first, last = (
            mean_std([curve[key] for curve in curves]) for key in ("amplification_first", "amplification_last")
        )
        cells.append("–" if first == "–" else f"{first} → {last}")  # noqa: RUF001  # en dash: mean_std's empty cell
        lines.append(f"| {dataset} | {model} | {len(curves)} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 5 else []


def read_rows(csv_path: Path) -> list[dict]:
    """Rows of the grid CSV (numbers as floats, empty cells as ``None``)."""
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key in {"seed", "epochs", "image_size", "batch_size"}:
                row[key] = int(value)
            elif key in METRICS or key in {"train_seconds", "peak_memory_MB", "inference_ms_per_image"}:
                row[key] = float(value) if value not in {"", "None"} else None
    return rows


def mean_std(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` (sample std over seeds), or the single value, or ``–`` when there is none."""  # noqa: RUF002  # the en dash it returns
    values = [value for value in values if value is not None and not math.isnan(value)]
    if not values:
        return "–"  # noqa: RUF001  # en dash: the empty cell of the markdown tables
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def groups_of(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Rows grouped by (``dataset/category``, model); the model carries its budget when the rows mix budgets."""
    groups: dict[tuple[str, str], list[dict]] = {}
    several_budgets = len({row["epochs"] for row in rows}) > 1  # e.g. a learning-curve run: one group per budget
    for row in rows:
        model = f"{row['model']} ({row['epochs']} epochs)" if several_budgets else row["model"]
        groups.setdefault((row["dataset"] + "/" + row["category"], model), []).append(row)
    return groups


def summary_table(rows: list[dict]) -> list[str]:
    """The main table of ``grid.md``: mean ± std over seeds of every metric per dataset and model."""
    lines = [
        "| dataset | model | seeds | " + " | ".join(METRICS) + " | train s | peak MB | ms/image |",
        "|---|---|---|" + "---|" * (len(METRICS) + 3),
    ]
    for (dataset, model), group in sorted(groups_of(rows).items()):
        cells = [mean_std([row[metric] for row in group]) for metric in METRICS]
        extra = [mean_std([row[key] for row in group], 0) for key in ("train_seconds", "peak_memory_MB")]
        speed = mean_std([row["inference_ms_per_image"] for row in group], 1)
        lines.append(f"| {dataset} | {model} | {len(group)} | " + " | ".join([*cells, *extra, speed]) + " |")
    return lines


def render_summary(rows: list[dict], out: Path) -> str:
    """The Markdown of ``grid.md`` for ``rows`` (curves read from ``out/curves``)."""
    first = rows[0]
    several_budgets = len({row["epochs"] for row in rows}) > 1
    header = (
        f"Teacher {first['teacher']}, {first['image_size']} px, batch {first['batch_size']}, "
        f"{'per-row' if several_budgets else first['epochs']} epochs "
        f"(AAND: per stage), hardware {first['hardware']}. "
        f"Mean ± std over seeds {sorted({row['seed'] for row in rows})}."
    )
    lines = [header, "", *summary_table(rows)]
    if targets := target_lines(rows):
        lines += ["", *targets]
    if curves := curve_lines(groups_of(rows), out):
        lines += ["", *curves]
    return "\n".join(lines) + "\n"


def summarise(rows: list[dict], out: Path) -> str:
    """Write ``grid.md`` (mean ± std over seeds per model and dataset) and ``grid.png``; return the Markdown."""
    markdown = render_summary(rows, out)
    (out / "grid.md").write_text(markdown)
    plot(groups_of(rows), out / "grid.png")
    return markdown


# The comparisons of the benchmark's targets: (model, the model it should beat).
TARGETS = [
    ("AAND", "AAND_raa_off"),
    ("AAND", "RD"),
    ("DSKD", "DSKD_se_only"),
    ("DSKD", "DSKD_sd_only"),
    ("DSKD", "Stfpm"),
]


def target_lines(rows: list[dict]) -> list[str]:
    """Markdown table: each target pair's mean image and pixel AUROC over the (dataset, seed, epochs) cells both have.

    Only matched cells count, so a pair whose runs cover different seeds or datasets is compared on what they share.
    """
    by_cell = {(row["model"], row["dataset"], row["category"], row["seed"], row["epochs"]): row for row in rows}
    lines = [
        "Targets (mean over the cells both models have; pixel AUROC over datasets with masks):",
        "",
        "| model | vs | cells | image_AUROC | vs image_AUROC | pixel_AUROC | vs pixel_AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, other in TARGETS:
        cells = [key[1:] for key in by_cell if key[0] == model and (other, *key[1:]) in by_cell]
        if not cells:
            continue
        values = []
        for metric in ("image_AUROC", "pixel_AUROC"):
            pairs = [(by_cell[(model, *c)][metric], by_cell[(other, *c)][metric]) for c in cells]
            pairs = [pair for pair in pairs if None not in pair]
            means = [sum(pair[i] for pair in pairs) / len(pairs) for i in (0, 1)] if pairs else []
            values += [f"{mean:.3f}" for mean in means] if pairs else ["–", "–"]  # noqa: RUF001  # en dash: empty cell
        lines.append(f"| {model} | {other} | {len(cells)} | " + " | ".join(values) + " |")
    return lines if len(lines) > 4 else []


def plot(groups: dict[tuple[str, str], list[dict]], path: Path) -> None:
    """Bar chart: one panel per dataset, image (and pixel, when there are masks) AUROC per model, std as error bars."""
    from matplotlib.figure import Figure  # no pyplot: no global backend to switch

    datasets = sorted({dataset for dataset, _ in groups})
    figure = Figure(figsize=(4.5 * len(datasets), 3.6))
    axes = figure.subplots(1, len(datasets), squeeze=False)
    # One y range for every panel: from chance level, or from 0 when any bar falls below chance.
    lowest = min(
        (
            row[m]
            for group in groups.values()
            for row in group
            for m in ("image_AUROC", "pixel_AUROC")
            if row[m] is not None
        ),
        default=1,
    )
    bottom = 0.5 if lowest >= 0.5 else 0.0
    for axis, dataset in zip(axes[0], datasets, strict=True):
        models = sorted(model for name, model in groups if name == dataset)
        for offset, metric in ((-0.2, "image_AUROC"), (0.2, "pixel_AUROC")):
            means, stds = [], []
            for model in models:
                values = [row[metric] for row in groups[dataset, model] if row[metric] is not None]
                mean = sum(values) / len(values) if values else float("nan")
                std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0
                means.append(mean)
                stds.append(std)
            positions = [index + offset for index in range(len(models))]
            axis.bar(positions, means, width=0.4, yerr=stds, label=metric, capsize=2)
        axis.set_xticks(range(len(models)), models, rotation=30, ha="right")
        axis.set_ylim(bottom, 1.0)
        axis.set_title(dataset)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("AUROC")
    axes[0][-1].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def run_grid(args: argparse.Namespace) -> None:
    """Run the cells not in the CSV yet, each in a child process, with a progress bar over the grid."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(args.out)
    csv_path = out / "grid.csv"
    rows = read_rows(csv_path)
    teacher = "paper" if args.teacher == "paper" else "tf_efficientnet_lite0 (ImageNet, lite0 extra)"
    cells = []
    for spec in args.datasets:
        dataset, category, root = parse_dataset(spec, args)
        if (reason := dataset_missing(dataset, category, root)) is not None:
            print(f"skipping {spec}: {reason}", flush=True)
            continue
        cells += [
            {"model": model, "dataset_spec": spec, "seed": seed, "key": (model, dataset, category, seed)}
            for seed in args.seeds
            for model in args.models
        ]
    done = {
        (row["model"], row["dataset"], row["category"], row["seed"])
        for row in rows
        if (row["teacher"], row["epochs"], row["image_size"]) == (teacher, args.epochs, args.image_size)
    }
    failed = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("grid", total=len(cells))
        for cell in cells:
            label = f"{cell['model']} on {cell['dataset_spec']} seed {cell['seed']}"
            if cell["key"] in done:
                progress.console.print(f"{label}: in {csv_path}, skipped")
                progress.advance(task)
                continue
            progress.update(task, description=label)
            row = run_child(cell, out)
            if row is None:
                failed.append(label)
                progress.console.print(f"[red]{label}: failed, see {out / 'logs'}[/red]")
            else:
                rows.append(row)
                write_csv(rows, csv_path, COLUMNS)
                summarise(rows, out)
                metrics = ", ".join(f"{name} {row[name]:.3f}" for name in METRICS if row[name] is not None)
                progress.console.print(f"{label}: {metrics}, {row['train_seconds']:.0f} s training")
            progress.advance(task)
    if rows:
        print(summarise(rows, out))
        print(f"results: {csv_path}, {out / 'grid.md'}, {out / 'grid.png'}")
    if failed:
        sys.exit(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


def run_child(cell: dict, out: Path) -> dict | None:
    """Run one cell in a child process (its log under ``out/logs``); its row, or ``None`` when it failed."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = (
        f"{cell['model']}_{cell['dataset_spec'].replace(':', '_').replace('=', '_').replace('/', '_')}_{cell['seed']}"
    )
    result = logs / f"{name}.json"
    result.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.grid",
        *sys.argv[1:],
        "--cell",
        json.dumps(cell),
        "--cell-result",
        str(result),
    ]
    with (logs / f"{name}.log").open("w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())  # noqa: S603  # this interpreter re-running this module
    if code != 0 or not result.is_file():
        return None
    return json.loads(result.read_text())


def add_dataset_roots(parser: argparse.ArgumentParser) -> None:
    """The dataset root arguments that :func:`parse_dataset` reads (shared with the other benchmarks)."""
    parser.add_argument("--mvtec-root", default="../shared/datasets/mvtec_ad")
    parser.add_argument("--visa-root", default="../shared/datasets/visa")
    parser.add_argument("--mvtec3d-root", default="../shared/datasets/mvtec_3d")
    parser.add_argument("--battery-weld-root", default="../shared/datasets/battery_weld")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["Stfpm", "RD", "AAND", "DSKD"], choices=list(MODELS))
    parser.add_argument("--datasets", nargs="+", default=["mvtec:bottle", "battery_weld", "elpv"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (AAND: per stage)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="dataloader workers (0: the cache serves the images)",
    )
    parser.add_argument(
        "--image-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode and resize each image once (anomalib_kd_ext.data.ImageCache); same tensors as without it",
    )
    parser.add_argument("--teacher", choices=["lite0", "paper"], default="lite0")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--texture-dir", default=None, help="AAND texture folder (default: anomalib's Perlin noise)")
    parser.add_argument("--elpv-max-train", type=int, default=None, help="ELPV: keep this many training cells")
    add_dataset_roots(parser)
    parser.add_argument("--work-dir", default="results/grid")
    parser.add_argument("--out", default="benchmarks/results/grid_cpu")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--cell-result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        for spec in args.datasets:
            parse_dataset(spec, args)
    except ValueError as error:
        parser.error(str(error))
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def main() -> None:
    """Run the grid, or (``--cell``) one cell of it."""
    args = parse_args()
    if args.cell is None:
        run_grid(args)
        return
    row = run_cell(json.loads(args.cell), args)  # an exception prints its traceback into the cell's log
    Path(args.cell_result).write_text(json.dumps(row), encoding="utf-8")


if __name__ == "__main__":
    main()
