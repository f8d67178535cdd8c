# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Training speed on a CPU: seconds per epoch of each model for the data pipelines we offer, and the compute floor.

Models are the grid's (``grid.MODELS``: Stfpm, RD, AAND, DSKD, with the Lite0 teacher); AAND's two stages are timed
separately (``amplification``, ``distillation``). Modes:

- ``today``: the grid's pipeline before the image cache: anomalib's datamodule decodes and resizes every image
  every epoch in ``--num-workers`` worker processes; fp32;
- ``fast_fp32``: :class:`anomalib_kd_ext.data.ImageCache` (each image decoded and resized once), ``num_workers=0``;
- ``fast_bf16``: the same with Lightning's ``precision="bf16-mixed"`` (CPU autocast to bfloat16);
- ``floor``: forward + backward + optimiser step on batches already in memory (the fast path's own batches,
  collected once), no data loading at all: what the model's arithmetic costs.

Every (model, mode) runs in its own process with the same seed; an epoch's time excludes validation. The reported
seconds per epoch are the median over the epochs after the first of each stage (the first includes warm-up and, for
``fast_*``, nothing else: the cache is filled before training starts, and that fill is reported as ``fill_s``).
Rows with a datamodule are also tested, so the cache's "same numbers" claim and bf16's accuracy can be read off the
CSV (``today`` and ``fast_fp32`` see the same tensors in the same order and must give the same metrics).

Example (from the repository root; ~30 min on 2 cores):

    python -m benchmarks train-speed --out benchmarks/results/train_speed
"""

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import grid
from benchmarks.tables import save_rows

MODES = ("today", "fast_fp32", "fast_bf16", "floor")
METRICS = ("image_AUROC", "pixel_AUROC")
COLUMNS = [
    "model",
    "stage",
    "mode",
    "seconds_per_epoch",
    "epochs_timed",
    "fill_s",
    "cache_MB",
    "peak_memory_MB",
    "image_AUROC",
    "pixel_AUROC",
    "precision",
    "num_workers",
    "epochs",
    "batch_size",
    "image_size",
    "dataset",
    "hardware",
    "cpu_flags",
]


def cpu_flags() -> str:
    """The CPU's vector ISA flags that matter for training and inference, read at run time."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(flag for flag in wanted if flag in flags) or platform.machine()


class InMemoryBatches:
    """A dataloader stand-in over collated batches already in memory, reshuffled every epoch with torch's RNG."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        import torch

        for index in torch.randperm(len(self.batches)).tolist():
            yield copy.copy(self.batches[index])  # the pre-processor replaces batch.image: keep the stored one


def run_cell(model_name: str, mode: str, args: argparse.Namespace) -> list[dict]:
    """Train (and, with a datamodule, test) one model in one mode; return one row per stage."""
    from anomalib.engine import Engine
    from benchmarks.common import EpochTimer, hardware
    from lightning.pytorch import seed_everything

    from anomalib_kd_ext.data import ImageCache

    dataset, category, root = grid.parse_dataset(args.dataset, args)
    work_dir = Path(args.work_dir) / f"{model_name}_{mode}"
    seed_everything(args.seed, workers=True)
    args.num_workers = args.today_workers if mode == "today" else 0
    model = grid.make_model(model_name, args, work_dir)
    datamodule = grid.make_datamodule(dataset, category, root, args, args.seed)
    total_epochs = model.trainer_arguments.get("max_epochs", args.epochs)
    timer = EpochTimer()
    cache = ImageCache()
    callbacks = [timer] if mode == "today" else [cache, timer]
    engine = Engine(
        default_root_dir=work_dir,
        callbacks=callbacks,
        logger=False,
        accelerator="cpu",
        devices=1,
        max_epochs=total_epochs,
        check_val_every_n_epoch=total_epochs,
        enable_progress_bar=False,
        precision="bf16-mixed" if mode == "fast_bf16" else "32-true",
    )
    fill = 0.0
    if mode == "floor":
        batches = collect_batches(dataset, category, root, args)
        engine.fit(model=model, train_dataloaders=InMemoryBatches(batches))
        metrics = {}
    else:
        start = time.perf_counter()
        engine.fit(model=model, datamodule=datamodule)
        fill = time.perf_counter() - start - sum(seconds for _, seconds in timer.epochs)
        metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    scale = 1 if platform.system() == "Darwin" else 1024
    rows = []
    for stage in dict.fromkeys(stage for stage, _ in timer.epochs):
        times = [seconds for name, seconds in timer.epochs if name == stage]
        timed = times[1:] or times
        rows.append(
            {
                "model": model_name,
                "stage": stage,
                "mode": mode,
                "seconds_per_epoch": round(statistics.median(timed), 2),
                "epochs_timed": len(timed),
                "fill_s": round(fill, 1) if mode.startswith("fast") else None,
                "cache_MB": round(cache.nbytes / 2**20, 1) if mode.startswith("fast") else None,
                "peak_memory_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20),
                **{name: metrics.get(name) for name in METRICS},
                "precision": "bf16-mixed" if mode == "fast_bf16" else "32-true",
                "num_workers": args.num_workers,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "image_size": args.image_size,
                "dataset": args.dataset,
                "hardware": hardware(),
                "cpu_flags": cpu_flags(),
            }
        )
    return rows


def collect_batches(dataset: str, category: str, root: Path | None, args: argparse.Namespace) -> list:
    """The training batches the fast path feeds the model (resized per image to the model's size), collated once."""
    from torchvision.transforms.v2 import Resize

    datamodule = grid.make_datamodule(dataset, category, root, args, args.seed)
    datamodule.train_augmentations = Resize((args.image_size, args.image_size))  # what the Engine adds for the model
    datamodule.setup("fit")
    return list(datamodule.train_dataloader())


def write_outputs(rows: list[dict], out: Path) -> str:
    """``train_speed.csv``, ``train_speed.json`` and the Markdown table ``train_speed.md``; return the Markdown."""
    save_rows(rows, out, "train_speed", COLUMNS)
    by_key = {(row["model"], row["stage"], row["mode"]): row for row in rows}
    stages = list(dict.fromkeys((row["model"], row["stage"]) for row in rows))
    first = rows[0]
    lines = [
        f"Seconds per training epoch, {first['dataset']}, {first['image_size']} px, batch {first['batch_size']}, "
        f"teacher tf_efficientnet_lite0, {first['hardware']} ({first['cpu_flags']}). Median over epochs 2..{first['epochs']} "
        "of each stage; validation excluded.",
        "",
        "| model | stage | today | fast fp32 | fast bf16 | floor | today / fast fp32 | fast fp32 / floor | "
        "image AUROC fp32 / bf16 | pixel AUROC fp32 / bf16 | cache MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, stage in stages:
        cells = [by_key.get((model, stage, mode), {}).get("seconds_per_epoch") for mode in MODES]
        today, fast, _, floor = cells
        ratio = f"{today / fast:.2f}x" if today and fast else "–"
        floor_ratio = f"{fast / floor:.2f}x" if fast and floor else "–"
        accuracy = []
        for metric in METRICS:
            values = [by_key.get((model, stage, mode), {}).get(metric) for mode in ("fast_fp32", "fast_bf16")]
            accuracy.append(" / ".join("–" if value is None else f"{value:.3f}" for value in values))
        cache = by_key.get((model, stage, "fast_fp32"), {}).get("cache_MB")
        shown = ["–" if value is None else f"{value:.1f}" for value in cells]
        lines.append(
            f"| {model} | {stage} | " + " | ".join([*shown, ratio, floor_ratio, *accuracy, str(cache or "–")]) + " |"
        )
    markdown = "\n".join(lines) + "\n"
    (out / "train_speed.md").write_text(markdown)
    return markdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (the grid's data and model arguments, plus the modes)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["Stfpm", "RD", "AAND", "DSKD"], choices=list(grid.MODELS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dataset", default="mvtec:bottle")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (AAND: per stage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--today-workers", type=int, default=2, help="num_workers of the 'today' pipeline (grid's)")
    parser.add_argument("--teacher", choices=["lite0"], default="lite0")
    parser.add_argument("--texture-dir", default="../shared/datasets/textures")
    parser.add_argument("--elpv-max-train", type=int, default=200)
    grid.add_dataset_roots(parser)
    parser.add_argument("--work-dir", default="results/train_speed")
    parser.add_argument("--out", default="benchmarks/results/train_speed")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run every (model, mode) in its own process, then write the CSV, JSON and Markdown."""
    args = parse_args(argv)
    if args.cell:
        model_name, mode = args.cell.split(":")
        print("ROWS " + json.dumps(run_cell(model_name, mode, args)), flush=True)
        return
    out = Path(args.out)
    previous = out / "train_speed.json"  # rows of an earlier run stay unless this run measures them again
    rows: list[dict] = json.loads(previous.read_text()) if previous.is_file() else []
    for model_name in args.models:
        for mode in args.modes:
            command = [
                sys.executable,
                "-m",
                "benchmarks.train_speed",
                *(argv or sys.argv[1:]),
                "--cell",
                f"{model_name}:{mode}",
            ]
            print(f"== {model_name} {mode}", flush=True)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            found = [line[5:] for line in result.stdout.splitlines() if line.startswith("ROWS ")]
            if result.returncode or not found:
                print(result.stdout[-2000:], result.stderr[-4000:], sep="\n")
                continue
            new = json.loads(found[-1])
            rows = [row for row in rows if (row["model"], row["mode"]) != (model_name, mode)] + new
            print(write_outputs(rows, out), flush=True)


if __name__ == "__main__":
    main()
