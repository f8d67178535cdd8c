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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks import common, grid
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


# The CPU's vector ISA flags that matter for training and inference.
TRAIN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_flags() -> str:
    """:data:`TRAIN_FLAGS` this CPU has, read at run time (the machine's architecture if they cannot be read)."""
    return common.cpu_flags(TRAIN_FLAGS) or platform.machine()


class InMemoryBatches:
    """A dataloader stand-in over collated batches already in memory, reshuffled every epoch with torch's RNG."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        """Number of batches."""
        return len(self.batches)

    def __iter__(self) -> Iterator:
        """The batches in a new random order (torch's RNG), each a shallow copy of the stored one."""
        import torch

        for index in torch.randperm(len(self.batches)).tolist():
            yield copy.copy(self.batches[index])  # the pre-processor replaces batch.image: keep the stored one


def run_cell(model_name: str, mode: str, args: argparse.Namespace) -> list[dict]:
    """Train (and, with a datamodule, test) one model in one mode; return one row per stage."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_kd_ext.data import ImageCache
    from benchmarks.common import EpochTimer, hardware

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
        same_foreground_rule(model, datamodule)
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
            },
        )
    return rows


# Where a training step's time goes: categories of the profiled ops (the rest is "other aten ops").
PROFILE_CATEGORIES = (
    "depthwise convolution backward",
    "convolution backward",
    "depthwise convolution forward",
    "convolution forward",
    "batch norm",
    "matmul / linear",
    "copies and dtype casts",
)
COPY_OPS = ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous")


def op_category(name: str, depthwise: bool) -> str:
    """The :data:`PROFILE_CATEGORIES` entry of a profiled op (its name, whether its weight is depthwise)."""
    if "conv" in name:
        direction = "backward" if "backward" in name else "forward"
        return f"{'depthwise ' if depthwise else ''}convolution {direction}"
    if "batch_norm" in name:
        return "batch norm"
    if any(key in name for key in ("addmm", "matmul", "aten::mm", "bmm")):
        return "matmul / linear"
    if name in COPY_OPS:
        return "copies and dtype casts"
    return "other aten ops"


def is_depthwise(name: str, shapes: list) -> bool:
    """Whether a convolution op's weight (its 2nd input; 3rd of a backward op) is depthwise, ``[C, 1, k, k]``."""
    index = 2 if "backward" in name else 1
    weight = shapes[index] if len(shapes) > index else []
    return len(weight) == 4 and weight[0] > 1 and weight[1] == 1 and weight[2] > 1


class StepProfiler(Callback):
    """Lightning callback: torch.profiler over ``steps`` training steps of each stage, after ``warmup`` steps.

    Step wall time and each op's self CPU time are summed per stage; :meth:`summary` groups the ops into
    :data:`PROFILE_CATEGORIES` and names the time outside any op (Python, Lightning, autograd bookkeeping).
    """

    def __init__(self, warmup: int = 3, steps: int = 6) -> None:
        self.warmup, self.steps = warmup, steps
        self.records: dict[str, dict] = {}
        self._profiler = None
        self._stage = ""
        self._seen: dict[str, int] = {}
        self._start = 0.0
        self._synthesis = 0.0  # seconds inside AAND's synthesizer during the current profiled step
        self._synthesis_start = 0.0
        self._has_synthesis = False
        self._plain = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Time AAND's anomaly synthesis (a module of its own) with forward hooks."""
        del trainer
        synthesizer = getattr(pl_module, "synthesizer", None)
        if isinstance(synthesizer, torch.nn.Module):
            self._has_synthesis = True

            depth = [0]  # the synthesizer calls itself once more on un-normalised images: time the outer call

            def started(*_: object) -> None:
                if depth[0] == 0:
                    self._synthesis_start = time.perf_counter()
                depth[0] += 1

            def ended(*_: object) -> None:
                depth[0] -= 1
                if depth[0] == 0:
                    self._synthesis += time.perf_counter() - self._synthesis_start

            synthesizer.register_forward_pre_hook(started)
            synthesizer.register_forward_hook(ended)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:  # noqa: ANN401
        """Start the profiler on the steps to profile."""
        from torch.profiler import ProfilerActivity, profile

        del trainer, batch, batch_idx
        self._stage = getattr(pl_module, "stage", "train")
        seen = self._seen.get(self._stage, 0)
        self._seen[self._stage] = seen + 1
        self._synthesis = 0.0
        self._plain = seen >= self.warmup + self.steps  # timed without the profiler (its overhead skews synthesis)
        if self.warmup <= seen < self.warmup + self.steps:
            self._profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self._profiler.start()
        self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,  # noqa: ANN401
        batch: Any,  # noqa: ANN401
        batch_idx: int,
    ) -> None:
        """Stop the profiler and add the step's op times to its stage."""
        del trainer, pl_module, outputs, batch, batch_idx
        wall = time.perf_counter() - self._start  # before stopping the profiler: its trace processing is not the step
        if not self._plain and self._profiler is None:
            return
        record = self.records.setdefault(
            self._stage,
            {"steps": 0, "wall_s": 0.0, "plain_wall_s": 0.0, "synthesis_s": 0.0, "ops": {}},
        )
        if self._plain:
            record["plain_wall_s"] += wall
            record["synthesis_s"] += self._synthesis
            return
        self._profiler.stop()
        record["steps"] += 1
        record["wall_s"] += wall
        for event in self._profiler.key_averages(group_by_input_shape=True):
            key = (event.key, "conv" in event.key and is_depthwise(event.key, event.input_shapes))
            record["ops"][key] = record["ops"].get(key, 0.0) + event.self_cpu_time_total / 1e6
        self._profiler = None

    def summary(self) -> dict[str, dict]:
        """Per stage: ms per step, and the share of step time of each category and of the 8 largest ops."""
        result = {}
        for stage, record in self.records.items():
            if not record["steps"]:
                continue
            categories: dict[str, float] = {}
            for (name, depthwise), seconds in record["ops"].items():
                label = op_category(name, depthwise)
                categories[label] = categories.get(label, 0.0) + seconds
            in_ops = sum(categories.values())
            categories["outside ops (Python, Lightning, autograd)"] = max(record["wall_s"] - in_ops, 0.0)
            ops: dict[str, float] = {}
            for (name, depthwise), seconds in record["ops"].items():
                label = name + (" (depthwise)" if depthwise else "")
                ops[label] = ops.get(label, 0.0) + seconds
            wall = record["wall_s"]
            result[stage] = {
                "ms_per_step": round(1000 * wall / record["steps"], 1),
                "steps": record["steps"],
                "synthesis_share": (
                    round(record["synthesis_s"] / record["plain_wall_s"], 3)
                    if self._has_synthesis and record["plain_wall_s"]
                    else None
                ),
                "categories": {k: round(v / wall, 3) for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
                "top_ops": {k: round(v / wall, 3) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:8]},
            }
        return result


def profile_cell(model_name: str, args: argparse.Namespace, precision: str, source: str = "floor") -> dict:
    """Profile training steps of one model at ``precision``; return :meth:`StepProfiler.summary`.

    ``source`` is where the batches come from: ``floor`` (batches in memory, as the floor mode) or ``fast`` (the
    datamodule with the image cache, as the fast modes).
    """
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_kd_ext.data import ImageCache

    dataset, category, root = grid.parse_dataset(args.dataset, args)
    work_dir = Path(args.work_dir) / f"{model_name}_profile_{source}"
    seed_everything(args.seed, workers=True)
    args.num_workers = 0
    model = grid.make_model(model_name, args, work_dir)
    profiler = StepProfiler()
    cache = [ImageCache()] if source == "fast" else []
    engine = Engine(
        default_root_dir=work_dir,
        callbacks=[*cache, profiler],
        logger=False,
        accelerator="cpu",
        devices=1,
        max_epochs=model.trainer_arguments.get("max_epochs", args.epochs),
        enable_progress_bar=False,
        precision=precision,
    )
    if source == "fast":
        engine.fit(model=model, datamodule=grid.make_datamodule(dataset, category, root, args, args.seed))
    else:
        same_foreground_rule(model, grid.make_datamodule(dataset, category, root, args, args.seed))
        engine.fit(model=model, train_dataloaders=InMemoryBatches(collect_batches(dataset, category, root, args)))
    return profiler.summary()


def write_profile(profiles: dict, out: Path) -> str:
    """Write ``train_speed_profile.json`` and ``.md`` (share of step time per category); return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed_profile.json").write_text(json.dumps(profiles, indent=1))
    labels = [*PROFILE_CATEGORIES, "other aten ops", "outside ops (Python, Lightning, autograd)"]
    lines = [
        "Where a training step spends its time (data: floor = batches in memory, fast = datamodule with the image "
        "cache): torch.profiler self CPU time per op, "
        "grouped, as a share of the step's wall time; "
        f"{hardware_line()}.",
        "",
        "The optimiser's updates are element-wise ops (in 'other aten ops'). 'AAND synthesis' is the share of the "
        "step's wall time inside AAND's anomaly synthesis (stage 1), timed without the profiler on the steps after "
        "the profiled ones. ms/step includes the profiler's own overhead: read the shares here and the seconds per "
        "epoch in train_speed.md.",
        "",
        "| model | stage | precision | data | ms/step | " + " | ".join(labels) + " | AAND synthesis |",
        "|---|---|---|---|---|" + "---|" * (len(labels) + 1),
    ]
    for key, stages in profiles.items():
        model, precision, source = key.split("|")
        for stage, summary in stages.items():
            shares = [f"{summary['categories'].get(label, 0.0):.0%}" for label in labels]
            synthesis = summary.get("synthesis_share")
            cells = [model, stage, precision, source, str(summary["ms_per_step"]), *shares]
            cells.append("–" if synthesis is None else f"{synthesis:.0%}")  # noqa: RUF001  # en dash: empty cell
            lines.append("| " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    (out / "train_speed_profile.md").write_text(markdown)
    return markdown


def hardware_line() -> str:
    """Hardware read at run time, for table captions."""
    from benchmarks.common import hardware

    return f"{hardware()} ({cpu_flags()})"


def same_foreground_rule(model: object, datamodule: object) -> None:
    """Floor runs attach no datamodule: give AAND's synthesis the rule its ``"reference"`` mode reads from it.

    Without this the floor would draw bottle's foreground with the ``"auto"`` rule (Otsu per image) instead of the
    reference's disc, and time more work than the cached path does.
    """
    from anomalib_kd_ext.models.aand.synthesis import reference_rule

    synthesizer = getattr(model, "synthesizer", None)
    if synthesizer is not None and synthesizer.foreground == "reference":
        rule = reference_rule(datamodule)
        synthesizer.foreground = rule.mode
        synthesizer.use_rule(rule)


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
        f"teacher tf_efficientnet_lite0, {first['hardware']} ({first['cpu_flags']}). "
        f"Median over epochs 2..{first['epochs']} of each stage; validation excluded.",
        "",
        "| model | stage | today | fast fp32 | fast bf16 | floor | today / fast fp32 | fast fp32 / floor | "
        "image AUROC fp32 / bf16 | pixel AUROC fp32 / bf16 | cache MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, stage in stages:
        cells = [by_key.get((model, stage, mode), {}).get("seconds_per_epoch") for mode in MODES]
        today, fast, _, floor = cells
        ratio = f"{today / fast:.2f}x" if today and fast else "–"  # noqa: RUF001  # en dash: empty table cell
        floor_ratio = f"{fast / floor:.2f}x" if fast and floor else "–"  # noqa: RUF001  # en dash: empty table cell
        accuracy = []
        for metric in METRICS:
            values = [by_key.get((model, stage, mode), {}).get(metric) for mode in ("fast_fp32", "fast_bf16")]
            accuracy.append(" / ".join("–" if value is None else f"{value:.3f}" for value in values))  # noqa: RUF001  # en dash: empty cell
        cache = by_key.get((model, stage, "fast_fp32"), {}).get("cache_MB")
        shown = ["–" if value is None else f"{value:.1f}" for value in cells]  # noqa: RUF001  # en dash: empty table cell
        lines.append(
            f"| {model} | {stage} | " + " | ".join([*shown, ratio, floor_ratio, *accuracy, str(cache or "–")]) + " |",  # noqa: RUF001  # en dash: empty cell
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
    parser.add_argument(
        "--profile",
        nargs="+",
        choices=["32-true", "bf16-mixed"],
        help="instead of timing: profile training steps at these precisions (train_speed_profile.md)",
    )
    parser.add_argument(
        "--profile-sources",
        nargs="+",
        choices=["floor", "fast"],
        default=["floor"],
        help="with --profile: batches in memory (floor) and / or the datamodule with the image cache (fast)",
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_in_child(argv: list[str] | None, cell: str) -> list | dict | None:
    """Run one cell of this task in a fresh process (its own peak memory and threads); its result, or None."""
    command = [sys.executable, "-m", "benchmarks.train_speed", *(argv or sys.argv[1:]), "--cell", cell]
    print(f"== {cell}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # this interpreter re-running this module
    found = [line[5:] for line in result.stdout.splitlines() if line.startswith("ROWS ")]
    if result.returncode or not found:
        print(result.stdout[-2000:], result.stderr[-4000:], sep="\n")
        return None
    return json.loads(found[-1])


def main(argv: list[str] | None = None) -> None:
    """Run every (model, mode) in its own process, then write the CSV, JSON and Markdown."""
    args = parse_args(argv)
    if args.cell:
        model_name, mode = args.cell.split(":")
        if args.profile:
            precision, source = mode.split("@")
            print("ROWS " + json.dumps(profile_cell(model_name, args, precision, source)), flush=True)
        else:
            print("ROWS " + json.dumps(run_cell(model_name, mode, args)), flush=True)
        return
    out = Path(args.out)
    if args.profile:
        saved = out / "train_speed_profile.json"  # profiles of an earlier run stay unless measured again
        profiles = json.loads(saved.read_text()) if saved.is_file() else {}
        for model_name in args.models:
            for precision in args.profile:
                for source in args.profile_sources:
                    found = run_in_child(argv, f"{model_name}:{precision}@{source}")
                    if found is not None:
                        profiles[f"{model_name}|{precision}|{source}"] = found
                    print(write_profile(profiles, out), flush=True)
        return
    previous = out / "train_speed.json"  # rows of an earlier run stay unless this run measures them again
    rows: list[dict] = json.loads(previous.read_text()) if previous.is_file() else []
    for model_name in args.models:
        for mode in args.modes:
            new = run_in_child(argv, f"{model_name}:{mode}")
            if new is None:
                continue
            rows = [row for row in rows if (row["model"], row["mode"]) != (model_name, mode)] + new
            print(write_outputs(rows, out), flush=True)


if __name__ == "__main__":
    main()
