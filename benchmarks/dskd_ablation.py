# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""DSKD against its single-student variants and anomalib's Stfpm, through anomalib's Engine.

Variants (same teacher, data, seed, image size, batch and epochs):

- ``dskd``: both students, DF embedding fed by Se (``df_source="student"``, the default);
- ``dskd_df_teacher`` / ``dskd_df_both``: both students, DF embedding fed by the teacher / by teacher and Se;
- ``se_only``: Sd off (the encoder-like student alone);
- ``sd_only``: Se off (the decoder-like student alone, DF embedding fed by the teacher);
- ``stfpm``: anomalib's ``Stfpm`` with the same teacher (given to it as a timm ``local-dir:``).

Datasets: ``bottle`` (``MVTecAD`` layout under ``--mvtec-root``) and ``battery_weld`` (``Folder`` layout under
``--battery-weld-root``). Validation uses the test split (``same_as_test``) on both, so every test image is scored.

Prints and saves (CSV + JSON under ``--out``, one row per finished variant; a rerun skips the variants already
saved) image AUROC, pixel AUROC, AUPRO, training seconds (training epochs only, validation excluded) and
torch-eager inference ms/image (batch 1, 256 px; ``--latency-only`` measures it alone, on an idle machine). Training
runs the fixed number of epochs and validates once, after the last one (validation only sets the thresholds).
Example (the DSKD numbers in docs/results.md came from these commands, run from the repository root):

    python -m benchmarks dskd-ablation --dataset battery_weld --epochs 20 --seed 42
    python -m benchmarks dskd-ablation --dataset bottle --epochs 10 --seed 42
    python -m benchmarks dskd-ablation --latency-only
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import CSVLogger

from benchmarks import grid
from benchmarks.common import LITE0_TEACHER, EpochTimer, hardware, inference_ms
from benchmarks.tables import save_rows

# Variant -> the grid's model of the same name (same teacher and switches, built by ``grid.make_model``).
VARIANTS = {
    "dskd": "DSKD",
    "se_only": "DSKD_se_only",
    "sd_only": "DSKD_sd_only",
    "stfpm": "Stfpm",
    "dskd_df_teacher": "DSKD_df_teacher",
    "dskd_df_both": "DSKD_df_both",
}
DATASETS = ("bottle", "battery_weld")


def make_datamodule(args: argparse.Namespace):  # noqa: ANN201
    """The grid's datamodule of ``args.dataset``; validation on the test split so that every test image is scored."""
    spec = "mvtec:bottle" if args.dataset == "bottle" else "battery_weld"
    return grid.make_datamodule(*grid.parse_dataset(spec, args), args, args.seed)


def make_model(name: str, args: argparse.Namespace, work_dir: Path):  # noqa: ANN201
    """One variant, with the EfficientNet-Lite0 teacher and its real ImageNet weights from the `lite0` extra."""
    return grid.make_model(VARIANTS[name], args, work_dir)


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Train and test one variant; return its row."""
    seed_everything(args.seed, workers=True)
    work_dir = Path(args.work_dir) / f"{name}_{args.dataset}_seed{args.seed}"
    model = make_model(name, args, work_dir)
    datamodule = make_datamodule(args)
    timer = EpochTimer()
    logger = CSVLogger(save_dir=str(work_dir), name="logs", version=0)
    engine = Engine(
        default_root_dir=work_dir,
        callbacks=[timer],
        logger=logger,
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        # No model selection: validate once, after the last epoch (it sets the thresholds the test uses).
        check_val_every_n_epoch=args.epochs,
    )
    engine.fit(model=model, datamodule=datamodule)
    metrics = engine.test(model=model, datamodule=datamodule)[0]
    return {
        "variant": name,
        "dataset": args.dataset,
        "teacher": LITE0_TEACHER,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "image_size": 256,
        "image_AUROC": metrics.get("image_AUROC"),
        "pixel_AUROC": metrics.get("pixel_AUROC"),
        "pixel_AUPRO": metrics.get("pixel_AUPRO"),
        "train_seconds": round(sum(timer.seconds.values()), 1),
        "inference_ms_per_image": round(inference_ms(model.model), 1),
        "trainable_parameters_M": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2),
        "hardware": hardware(),
        "torch": torch.__version__,
    }


def measure_latency(args: argparse.Namespace) -> None:
    """Print and save torch-eager latency (batch 1, 256 px) of each variant; speed does not depend on training."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            model = make_model(name, args, Path(tmp))
            rows.append(
                {
                    "variant": name,
                    "teacher": LITE0_TEACHER,
                    "image_size": 256,
                    "batch_size": 1,
                    "inference_ms_per_image": round(inference_ms(model.model, repeats=50), 1),
                    "hardware": hardware(),
                    "torch": torch.__version__,
                },
            )
            print(rows[-1], flush=True)
    save_rows(rows, Path(args.out), "dskd_latency_cpu")


def main() -> None:
    """Parse arguments, run the variants not saved yet, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, default="bottle")
    grid.add_dataset_roots(parser)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--work-dir", default="results/dskd_ablation")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--latency-only", action="store_true", help="only measure inference latency (untrained)")
    parser.set_defaults(teacher="lite0", image_size=256, texture_dir=None, elpv_max_train=None)
    args = parser.parse_args()
    if args.latency_only:
        measure_latency(args)
        return
    root = Path(args.mvtec_root, "bottle") if args.dataset == "bottle" else Path(args.battery_weld_root)
    if not root.is_dir():
        parser.error(f"dataset not found: {root}")

    out = Path(args.out)
    stem = f"dskd_ablation_{args.dataset}_e{args.epochs}_seed{args.seed}_cpu"
    saved = out / f"{stem}.json"
    rows = json.loads(saved.read_text()) if saved.is_file() else []
    done = {row["variant"] for row in rows}
    for name in args.variants:
        if name in done:
            print(f"{name}: already in {saved}, skipped", flush=True)
            continue
        rows.append(run_variant(name, args))
        print(json.dumps(rows[-1], indent=1), flush=True)
        save_rows(rows, out, stem)
    print(f"\n{'variant':16} {'image_AUROC':>11} {'pixel_AUROC':>11} {'pixel_AUPRO':>11} {'train s':>8} {'ms/img':>7}")
    for row in rows:
        print(
            f"{row['variant']:16} {row['image_AUROC']:11.4f} {row['pixel_AUROC']:11.4f} {row['pixel_AUPRO']:11.4f} "
            f"{row['train_seconds']:8.0f} {row['inference_ms_per_image']:7.1f}",
        )


if __name__ == "__main__":
    main()
