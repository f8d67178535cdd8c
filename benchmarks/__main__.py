# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``python -m benchmarks <task> [options]``: every benchmark of the project behind one command.

Run from the repository root (the tasks read ``../shared`` and write ``benchmarks/results`` relative to it).
"""

import importlib
import sys

# Task -> (module, what it measures).
TASKS = {
    "grid": ("grid", "accuracy grid: models x datasets x seeds through anomalib's Engine (grid.csv/.md/.png)"),
    "train-speed": ("train_speed", "seconds per epoch: today's pipeline, the image cache fp32 / bf16, the floor"),
    "deploy": ("deploy_benchmark", "roofline of this CPU and torch / OpenVINO FP32 / BF16 / INT8 latency"),
    "int8-accuracy": ("int8_accuracy", "image and pixel AUROC of OpenVINO INT8 against FP32 (drift)"),
    "dskd-branches": ("dskd_branches", "AUROC of DSKD's fused, Se-only and Sd-only maps of trained checkpoints"),
    "hkd-share": ("hkd_share", "share of AAND's HKD loss on its hard positions, on trained checkpoints"),
    "aand-ablation": ("aand_ablation", "AAND switches on one dataset (RAA, gate, HKD)"),
    "dskd-ablation": ("dskd_ablation", "DSKD switches on one dataset (students, DF source) against Stfpm"),
    "device-check": ("device_check", "AAND and DSKD on a GPU: CPU vs CUDA, precisions, determinism, s/epoch"),
    "tables": ("doc_tables", "every grid.md and every marked table of the docs, rebuilt from the committed results"),
}


def usage() -> str:
    """The list of tasks."""
    lines = ["usage: python -m benchmarks <task> [options]   (python -m benchmarks <task> --help)", "", "tasks:"]
    lines += [f"  {task:<15}{description}" for task, (_, description) in TASKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run one task with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return
    task, *options = argv
    if task not in TASKS:
        print(f"unknown task {task!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(f"benchmarks.{TASKS[task][0]}")
    sys.argv = [f"python -m benchmarks {task}", *options]
    module.main()


if __name__ == "__main__":
    main()
