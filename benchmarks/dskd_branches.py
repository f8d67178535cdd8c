# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Which student carries DSKD's score? AUROC of each student's map, from the DSKD models a grid run trained.

For every (dataset, seed), loads the checkpoint that ``benchmarks/grid.py`` left in its work dir
(``<work-dir>/DSKD_<dataset>_<category>_seed<seed>/**/model.ckpt``) and scores the test split three ways, without
training anything: the fused map (the model's own output), the map of the encoder student Se alone, and the map of
the decoder student Sd alone (same cosine map, levels added, as the fused one). The raw scores are used (AUROC does
not depend on anomalib's normalisation). The test images are resized as anomalib's ``Engine`` does (the model's
``Resize`` per image, before collation), so the fused column reproduces the grid's ``image_AUROC``. Writes
``<out>/dskd_branches.csv`` and ``<out>/dskd_branches.md``.

Dataset arguments are those of grid.py and must match the grid run, e.g. (from the repository root):

    python -m benchmarks dskd-branches --datasets mvtec:bottle battery_weld elpv --seeds 0 1 2 \
        --elpv-max-train 200 --out benchmarks/results/grid_cpu/dskd_branches
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from anomalib.data.transforms.utils import extract_transforms_by_type
from torchmetrics.functional.classification import binary_auroc
from torchvision.transforms.v2 import Compose, Resize

from benchmarks import grid
from benchmarks.tables import write_csv

if TYPE_CHECKING:
    from anomalib.data import AnomalibDataModule

BRANCHES = ("fused", "Se only", "Sd only")


@torch.no_grad()
def branch_scores(checkpoint: Path, datamodule: "AnomalibDataModule") -> dict[str, float | None]:
    """Image (and, with masks, pixel) AUROC of the fused, Se and Sd maps of one trained DSKD."""
    from anomalib_kd_ext.models import DSKD
    from anomalib_kd_ext.models.components.anomaly_map import anomaly_score

    model = DSKD.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    network = model.model
    datamodule.setup("test")
    # What anomalib does once the datamodule is attached to a trainer: the model's Resize runs on each image in the
    # dataset, before collation (without it the scores differ from the grid's). Public attributes only: the test set's
    # augmentations become the datamodule's test augmentations followed by the model's Resize.
    resizes = extract_transforms_by_type(model.pre_processor.transform, Resize)
    steps = [t for t in (datamodule.test_augmentations, *resizes[:1]) if t is not None]
    datamodule.test_data.augmentations = Compose(steps) if steps else None
    scores = {branch: [] for branch in BRANCHES}
    maps = {branch: [] for branch in BRANCHES}
    labels, masks = [], []
    for batch in datamodule.test_dataloader():
        if batch.gt_mask is not None:
            images, mask = model.pre_processor.transform(batch.image, batch.gt_mask)
            masks.append(mask.flatten().int())
        else:
            images = model.pre_processor.transform(batch.image)
        labels.append(batch.gt_label.int())
        features = network.features(images)
        size = images.shape[-2:]
        students = {"Se only": features.encoder_student, "Sd only": features.decoder_student}
        students["fused"] = [*features.encoder_student, *features.decoder_student]
        for branch, student in students.items():
            teacher = features.teacher * (len(student) // len(features.teacher))
            anomaly_map = network.anomaly_map(teacher, student, size)
            scores[branch].append(anomaly_score(anomaly_map).flatten())
            maps[branch].append(anomaly_map.flatten())
        own = network(images)  # the model's own output: the "fused" column must equal it
        torch.testing.assert_close(own.anomaly_map.flatten(), maps["fused"][-1])
    target = torch.cat(labels)
    result = {}
    for branch in BRANCHES:
        result[f"{branch} image_AUROC"] = binary_auroc(torch.cat(scores[branch]), target).item()
        pixel = binary_auroc(torch.cat(maps[branch]), torch.cat(masks)).item() if masks else None
        result[f"{branch} pixel_AUROC"] = pixel
    return result


def main() -> None:
    """Score every (dataset, seed) whose DSKD checkpoint is in the work dir; write the CSV and the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/grid_cpu/dskd_branches")
    args, grid_argv = parser.parse_known_args()
    grid_args = grid.parse_args(grid_argv)
    out = Path(args.out)
    rows = []
    for spec in grid_args.datasets:
        dataset, category, root = grid.parse_dataset(spec, grid_args)
        for seed in grid_args.seeds:
            work_dir = Path(grid_args.work_dir) / f"DSKD_{dataset}_{category}_seed{seed}"
            checkpoints = sorted(work_dir.glob("**/model.ckpt"))
            if not checkpoints:
                print(f"{spec} seed {seed}: no checkpoint under {work_dir} (run the grid first), skipped")
                continue
            datamodule = grid.make_datamodule(dataset, category, root, grid_args, seed)
            row = {"dataset": f"{dataset}/{category}", "seed": seed, **branch_scores(checkpoints[-1], datamodule)}
            print(
                ", ".join(
                    f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items()
                ),
            )
            rows.append(row)
    if not rows:
        sys.exit(
            "no DSKD checkpoint found: run `python -m benchmarks grid --models DSKD` and the same --work-dir first",
        )
    write_csv(rows, out / "dskd_branches.csv")
    columns = [key for key in rows[0] if key not in {"dataset", "seed"}]
    lines = [
        "AUROC of each student's map of the same trained DSKD models (mean ± std over seeds; raw scores).",
        "",
        "| dataset | seeds | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for dataset in sorted({row["dataset"] for row in rows}):
        group = [row for row in rows if row["dataset"] == dataset]
        cells = [grid.mean_std([row[column] for row in group]) for column in columns]
        lines.append(f"| {dataset} | {len(group)} | " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    (out / "dskd_branches.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
