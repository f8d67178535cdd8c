# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND against its ablations on one MVTec-style category, through anomalib's Engine.

Variants (same teacher, data, seed, image size, batch and epochs per stage):

- ``aand``: the full method (RAA + HKD);
- ``raa_off``: no RAA, HKD loss (stage 1 skipped);
- ``plain_rd``: no RAA, no HKD: plain reverse distillation with RD4AD's loss.

Prints and saves (CSV + JSON under ``--out``) image AUROC, pixel AUROC, AUPRO, the seconds of each
stage, torch-eager inference ms/image (batch 1, 256 px, after warm-up) and the stage-1 gate's
precision and recall on the synthetic masks of the last stage-1 epoch.

Example (the AAND numbers in docs/results.md came from these commands, run from the repository root):

    python -m benchmarks aand-ablation --root ../shared/datasets/mvtec_ad --category bottle \
        --texture-dir ../shared/datasets/textures --epochs 10 --seed 42
    python -m benchmarks aand-ablation --latency-only   # on an otherwise idle machine
"""

import argparse
import json
from pathlib import Path

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import CSVLogger

from benchmarks import grid
from benchmarks.common import LITE0_TEACHER, EpochTimer, hardware, inference_ms, last_logged
from benchmarks.tables import save_rows

# Variant -> the grid's model of the same name (same teacher and switches, built by ``grid.make_model``).
VARIANTS = {"aand": "AAND", "raa_off": "AAND_raa_off", "plain_rd": "RD"}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Train and test one variant; return its row."""
    seed_everything(args.seed, workers=True)
    work_dir = Path(args.work_dir) / f"{name}_{args.category}_seed{args.seed}"
    model = grid.make_model(VARIANTS[name], args, work_dir)
    datamodule = grid.make_datamodule("mvtec", args.category, Path(args.root), args, args.seed)
    timer = EpochTimer()
    logger = CSVLogger(save_dir=str(work_dir), name="logs", version=0)
    engine = Engine(default_root_dir=work_dir, callbacks=[timer], logger=logger, accelerator="cpu", devices=1)
    engine.fit(model=model, datamodule=datamodule)
    metrics = engine.test(model=model, datamodule=datamodule)[0]
    metrics_csv = Path(logger.log_dir) / "metrics.csv"
    return {
        "variant": name,
        "category": args.category,
        "teacher": LITE0_TEACHER,
        "seed": args.seed,
        "epochs_stage1": model.amplification_epochs,
        "epochs_stage2": model.distillation_epochs,
        "batch_size": args.batch_size,
        "image_size": 256,
        "texture_dir": args.texture_dir or "anomalib Perlin patterns",
        "image_AUROC": metrics.get("image_AUROC"),
        "pixel_AUROC": metrics.get("pixel_AUROC"),
        "pixel_AUPRO": metrics.get("pixel_AUPRO"),
        "stage1_seconds": round(timer.seconds.get("amplification", 0.0), 1),
        "stage2_seconds": round(timer.seconds.get("distillation", 0.0), 1),
        "inference_ms_per_image": round(inference_ms(model.model), 1),
        "gate_precision": last_logged(metrics_csv, "train_gate_precision"),
        "gate_recall": last_logged(metrics_csv, "train_gate_recall"),
        "hardware": hardware(),
        "torch": torch.__version__,
    }


def measure_latency(args: argparse.Namespace) -> None:
    """Print and save torch-eager latency (batch 1, 256 px) of each variant."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        model = grid.make_model(VARIANTS[name], args, Path(args.work_dir))
        trainable = [p for p in model.model.parameters() if p.requires_grad]
        rows.append(
            {
                "variant": name,
                "teacher": "tf_efficientnet_lite0",
                "image_size": 256,
                "batch_size": 1,
                "inference_ms_per_image": round(inference_ms(model.model, repeats=50), 1),
                "parameters_trainable_M": round(sum(p.numel() for p in trainable) / 1e6, 2),
                "hardware": hardware(),
                "torch": torch.__version__,
            },
        )
        print(rows[-1], flush=True)
    save_rows(rows, out, "aand_latency_cpu")


def main() -> None:
    """Parse arguments, run the variants, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="../shared/datasets/mvtec_ad")
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--texture-dir", default=None)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per stage")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--work-dir", default="results/aand_ablation")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only measure inference latency of each variant (untrained weights; speed does not depend on them)",
    )
    parser.set_defaults(teacher="lite0", image_size=256, elpv_max_train=None)
    args = parser.parse_args()
    if args.latency_only:
        measure_latency(args)
        return
    if not Path(args.root, args.category).is_dir():
        parser.error(f"dataset not found: {Path(args.root, args.category)} (expected the MVTec AD layout)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"aand_ablation_{args.category}_e{args.epochs}_seed{args.seed}_cpu"
    rows = []
    for name in args.variants:
        rows.append(run_variant(name, args))
        print(json.dumps(rows[-1], indent=1), flush=True)
        save_rows(rows, out, stem)
    print(
        f"\n{'variant':10} {'image_AUROC':>11} {'pixel_AUROC':>11} {'pixel_AUPRO':>11} "
        f"{'s1 s':>7} {'s2 s':>7} {'ms/img':>7}",
    )
    for row in rows:
        print(
            f"{row['variant']:10} {row['image_AUROC']:11.4f} {row['pixel_AUROC']:11.4f} {row['pixel_AUPRO']:11.4f} "
            f"{row['stage1_seconds']:7.0f} {row['stage2_seconds']:7.0f} {row['inference_ms_per_image']:7.1f}",
        )


if __name__ == "__main__":
    main()
