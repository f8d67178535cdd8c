# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""KD models side by side: a grid of models x datasets x seeds, trained and tested through anomalib's Engine.

The cells are those of the installed compare command (``python -m anomalib_kd_ext.compare``, package
``anomalib_kd_ext.compare``: one implementation). Every cell uses the same teacher, image size, batch size, seed
and epoch budget, and runs in its own process (so the peak memory column is that cell's, and one crashing cell does
not end the grid). A finished cell is a row of ``<out>/grid.csv``; a rerun with the same ``--out`` skips the cells
already there (resume after an interruption; an interrupted cell starts again from scratch). After each cell the
Markdown table (mean ± std over seeds) and the PNG chart are rewritten from the CSV. Each cell's learning curves
(the per-epoch losses the model logs, and AAND's stage-1 gate precision and recall) are copied to
``<out>/curves/<model>_<dataset>_<category>_seed<seed>_e<epochs>.csv`` and summarised in ``grid.md``.

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
With ``--false-alarm-rate R`` the protocol is the compare command's instead: ``--val-split-ratio`` of the good
training images are held out and set each model's threshold at rate R, and the rows add the recall on defective
test images at it (``recall_at_false_alarm``) and the share of good test images flagged (``good_flagged``).

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
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from anomalib_kd_ext.compare.report import mean_std, read_rows
from anomalib_kd_ext.compare.runner import run_cells
from anomalib_kd_ext.compare.spec import COLUMNS, METRICS, MODELS, PAPER_TEACHERS, Cell, DatasetSpec, Settings

if TYPE_CHECKING:
    from anomalib.data import AnomalibDataModule
    from anomalib.models import AnomalibModule

__all__ = ["COLUMNS", "METRICS", "MODELS", "PAPER_TEACHERS", "mean_std", "read_rows"]
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


def dataset_spec(dataset: str, category: str, root: Path | None) -> DatasetSpec:
    """The core's description of a dataset :func:`parse_dataset` returned (Folder: the grid's layout)."""
    if dataset != "folder":
        return DatasetSpec(kind=dataset, category=category, root=None if root is None else str(root))
    mask_dir = "ground_truth/defect" if root is not None and (root / "ground_truth/defect").is_dir() else None
    return DatasetSpec(kind="folder", category=category, root=str(root), mask_dir=mask_dir)


def dataset_missing(dataset: str, category: str, root: Path | None) -> str | None:
    """Why the dataset cannot be used here, or ``None``."""
    return dataset_spec(dataset, category, root).missing()


def settings_of(args: argparse.Namespace) -> Settings:
    """The core's settings from a benchmark's arguments (what a benchmark does not have keeps its default)."""
    defaults = Settings(accelerator="cpu")
    names = Settings.__dataclass_fields__
    return Settings(**{name: getattr(args, name, getattr(defaults, name)) for name in names})


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
    from anomalib_kd_ext.compare.cells import make_datamodule as core_datamodule

    return core_datamodule(dataset_spec(dataset, category, root), settings_of(args), seed, **overrides)


def make_model(name: str, args: argparse.Namespace, work_dir: Path) -> "AnomalibModule":
    """One model of the grid with the chosen teacher and image size."""
    from anomalib_kd_ext.compare.cells import make_model as core_model

    return core_model(name, settings_of(args), work_dir)


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


def groups_of(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Rows grouped by (``dataset/category``, model); the model carries its budget when the rows mix budgets."""
    groups: dict[tuple[str, str], list[dict]] = {}
    several_budgets = len({row["epochs"] for row in rows}) > 1  # e.g. a learning-curve run: one group per budget
    several_rates = len({row.get("false_alarm_rate") for row in rows}) > 1  # thresholds set two ways
    for row in rows:
        model = f"{row['model']} ({row['epochs']} epochs)" if several_budgets else row["model"]
        if several_rates:
            model += f" (false alarms {row.get('false_alarm_rate') or 'F1 on test'})"
        groups.setdefault((row["dataset"] + "/" + row["category"], model), []).append(row)
    return groups


def summary_table(rows: list[dict]) -> list[str]:
    """The main table of ``grid.md``: mean ± std over seeds of every metric per dataset and model."""
    alarms = [key for key in ("recall_at_false_alarm", "good_flagged") if any(row.get(key) is not None for row in rows)]
    rates = sorted({row["false_alarm_rate"] for row in rows if row.get("false_alarm_rate") is not None})
    names = {"recall_at_false_alarm": "recall at false-alarm rate", "good_flagged": "good flagged"}
    lines = [
        "| dataset | model | seeds | "
        + " | ".join([*METRICS, *(names[key] for key in alarms)])
        + " | train s | peak MB | ms/image |",
        "|---|---|---|" + "---|" * (len(METRICS) + len(alarms) + 3),
    ]
    if alarms:  # the rows of a --false-alarm-rate run: how many good images set the threshold and measure its rate
        rate_text = ", ".join(f"{rate:g}" for rate in rates)
        counts = {
            row["dataset"] + "/" + row["category"]: f"{row['validation_good_images']} / {row['test_good_images']}"
            for row in rows
            if row.get("validation_good_images") is not None
        }
        lines[:0] = [
            f"Thresholds at a false-alarm rate of {rate_text} on good training images held out of training "
            "(held-out / good test images: "
            + ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
            + ").",
            "",
        ]
    for (dataset, model), group in sorted(groups_of(rows).items()):
        cells = [mean_std([row.get(metric) for row in group]) for metric in [*METRICS, *alarms]]
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
    """Run the cells not in the CSV yet, one child process each (the compare command's runner)."""
    out = Path(args.out)
    settings = settings_of(args)
    cells = []
    for spec in args.datasets:
        dataset = dataset_spec(*parse_dataset(spec, args))
        if (reason := dataset.missing()) is not None:
            print(f"skipping {spec}: {reason}", flush=True)
            continue
        for seed in args.seeds:
            for model in args.models:
                name = f"{model}_{dataset.kind}_{dataset.category}_seed{seed}"
                curves = out / "curves" / curve_name(model, dataset.kind, dataset.category, seed, args.epochs)
                work_dir = Path(args.work_dir) / name
                predictions = str(work_dir / "predictions")  # per-image scores and small maps, beside the checkpoint
                cells.append(Cell(model, dataset, seed, settings, str(work_dir), str(curves), predictions))
    rows, failed = run_cells(cells, out / "grid.csv", out / "logs", after_row=lambda rows: summarise(rows, out))
    if rows:
        print(summarise(rows, out))
        print(f"results: {out / 'grid.csv'}, {out / 'grid.md'}, {out / 'grid.png'}")
    if failed:
        sys.exit(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


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
    parser.add_argument(
        "--false-alarm-rate",
        type=float,
        default=None,
        help=(
            "hold --val-split-ratio of the good training images out to set each model's threshold at this rate and "
            "report the recall on defects at it (default: validation on the test split, no recall)"
        ),
    )
    parser.add_argument("--val-split-ratio", type=float, default=0.2, help="with --false-alarm-rate: held-out share")
    add_dataset_roots(parser)
    parser.add_argument("--work-dir", default="results/grid")
    parser.add_argument("--out", default="benchmarks/results/grid_cpu")
    args = parser.parse_args(argv)
    try:
        for spec in args.datasets:
            parse_dataset(spec, args)
    except ValueError as error:
        parser.error(str(error))
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.false_alarm_rate is not None and not 0 < args.false_alarm_rate < 1:
        parser.error(f"--false-alarm-rate must lie between 0 and 1, got {args.false_alarm_rate}")
    return args


def main() -> None:
    """Run the grid."""
    run_grid(parse_args())


if __name__ == "__main__":
    main()
