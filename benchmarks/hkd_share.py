# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

r"""Where AAND's HKD loss sits: its hard (top-k positions) term against RD4AD's global term, per level.

For a trained AAND checkpoint and the training images of its dataset, recompute stage 2's loss exactly as training
logs it (student in training mode, ``d(p) = 1 - cos(F_adv(p), S(p))``) and report per teacher level: the hard term
(mean of each image's ``k_hard`` largest ``d``), the global term (``1 - cos`` of the flattened maps), the hard term's
share of the level's loss, the mean ``d`` over all positions, the share of positions with ``d > 1`` (possible when
features end in a linear layer, as EfficientNet-Lite0's blocks do) and the share of all positions' ``d`` that the
``k_hard`` positions hold. Nothing is trained.

    python -m benchmarks hkd-share \
        --ckpt results/grid/AAND_mvtec_bottle_seed0/AAND/MVTecAD/bottle/v0/weights/lightning/model.ckpt \
        --dataset mvtec:bottle --out benchmarks/results/hkd_share
"""

import argparse
from pathlib import Path

import torch
from torch.nn import functional as F  # noqa: N812
from torchvision.transforms.v2 import Resize

from benchmarks import grid
from benchmarks.tables import save_rows


def level_statistics(teacher: torch.Tensor, student: torch.Tensor, k_hard: int) -> dict[str, torch.Tensor]:
    """Per-image sums of the quantities above for one level (averaged over images by the caller)."""
    distance = 1 - F.cosine_similarity(teacher.flatten(2), student.flatten(2), dim=1, eps=1e-8)
    hard = distance.topk(k_hard, dim=1).values
    global_term = 1 - F.cosine_similarity(teacher.flatten(1), student.flatten(1), dim=1, eps=1e-8)
    return {
        "hard": hard.mean(dim=1),
        "global": global_term,
        "mean_d": distance.mean(dim=1),
        "share_d_above_1": (distance > 1).float().mean(dim=1),
        "topk_share_of_d": hard.sum(dim=1) / distance.sum(dim=1).clamp_min(1e-12),
    }


def measure(ckpt: Path, dataset_spec: str, args: argparse.Namespace) -> list[dict]:
    """One row per teacher level, plus the sum over levels."""
    from anomalib_kd_ext.models import AAND

    model = AAND.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    dataset, category, root = grid.parse_dataset(dataset_spec, args)
    datamodule = grid.make_datamodule(dataset, category, root, args, seed=0)
    datamodule.setup("fit")
    # The model's resize on each image before collation, as anomalib's Engine sets it; the whole transform (resize,
    # normalisation) then runs on the batch, as anomalib's PreProcessor does at the start of each training batch.
    transform = model.pre_processor.transform
    datamodule.train_data.augmentations = next(
        t for t in getattr(transform, "transforms", [transform]) if isinstance(t, Resize)
    )
    totals: dict[int, dict[str, float]] = {}
    images_seen = 0
    network = model.model.train()  # training mode, as stage 2 logs its loss (the teacher stays in eval mode)
    with torch.no_grad():
        for batch in datamodule.train_dataloader():
            images = transform(batch.image)
            amplified, reconstructed = network(images)
            for level, (teacher, student) in enumerate(zip(amplified, reconstructed, strict=True)):
                stats = level_statistics(teacher, student, model.loss.k_hard)
                row = totals.setdefault(level, dict.fromkeys(stats, 0.0))
                for key, value in stats.items():
                    row[key] += float(value.sum())
            images_seen += len(images)
    rows = []
    for level, sums in sorted(totals.items()):
        means = {key: value / images_seen for key, value in sums.items()}
        means["hard_share_of_loss"] = means["hard"] / (means["hard"] + means["global"])
        rows.append({"checkpoint": str(ckpt), "dataset": dataset_spec, "level": level, "images": images_seen, **means})
    hard, global_term = sum(row["hard"] for row in rows), sum(row["global"] for row in rows)
    rows.append(
        {
            "checkpoint": str(ckpt),
            "dataset": dataset_spec,
            "level": "all",
            "images": images_seen,
            "hard": hard,
            "global": global_term,
            "hard_share_of_loss": hard / (hard + global_term),
        },
    )
    return rows


def main() -> None:
    """Measure each ``--ckpt`` on its ``--dataset``; print and save CSV, JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", nargs="+", type=Path, required=True)
    parser.add_argument("--dataset", nargs="+", required=True, help="one grid dataset spec per checkpoint")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--elpv-max-train", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hkd_share"))
    grid.add_dataset_roots(parser)
    args = parser.parse_args()
    if len(args.ckpt) != len(args.dataset):
        parser.error("give one --dataset per --ckpt")
    rows = [row for ckpt, spec in zip(args.ckpt, args.dataset, strict=True) for row in measure(ckpt, spec, args)]
    save_rows(rows, args.out, "hkd_share")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    shown = [c for c in columns if c != "checkpoint"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "–")) for c in shown]  # noqa: RUF001  # en dash: empty cell
        lines.append("| " + " | ".join(cells) + " |")
    (args.out / "hkd_share.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
