# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The results of a comparison: rows as CSV, the ranked Markdown table and the side-by-side heat-map picture."""

import csv
import math
from pathlib import Path
from typing import Any

from anomalib_kd_ext.compare.spec import COLUMNS, METRICS

INTEGERS = {"seed", "epochs", "image_size", "batch_size", "validation_good_images", "test_good_images"}
INTEGERS |= {"test_defective_images"}
FLOATS = {*METRICS, "false_alarm_rate", "image_threshold", "recall_at_false_alarm", "good_flagged"}
FLOATS |= {"train_seconds", "peak_memory_MB", "inference_ms_per_image"}


def write_csv(rows: list[dict], path: Path, columns: list[str] | None = None) -> None:
    """Write ``rows`` to ``path`` atomically (a crash never leaves half a file).

    ``columns`` defaults to the union of the rows' keys, in first-seen order; keys outside ``columns`` are an error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def read_rows(csv_path: Path) -> list[dict[str, Any]]:
    """Rows of a results CSV: numbers as numbers, empty cells and columns the file lacks as ``None``."""
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    typed = []
    for row in rows:
        values: dict[str, Any] = dict.fromkeys(COLUMNS)
        for key, value in row.items():
            if value in {"", "None"}:
                values[key] = None
            elif key in INTEGERS:
                values[key] = int(value)
            elif key in FLOATS:
                values[key] = float(value)
            else:
                values[key] = value
        typed.append(values)
    return typed


def mean_std(values: list[float | None], digits: int = 3) -> str:
    """``mean ± std`` (sample std over seeds), or the single value, or ``–`` when there is none."""  # noqa: RUF002  # the en dash it returns
    present = [value for value in values if value is not None and not math.isnan(value)]
    if not present:
        return "–"  # noqa: RUF001  # en dash: the empty cell of the markdown tables
    mean = sum(present) / len(present)
    if len(present) == 1:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((value - mean) ** 2 for value in present) / (len(present) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def percent(share: float) -> str:
    """``0.05`` -> ``5 %``, ``0.005`` -> ``0.5 %``."""
    return f"{100 * share:.3g} %"


def _cell(value: float | None, digits: int = 3) -> str:
    return mean_std([value], digits)


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by image AUROC, best first (pixel AUROC breaks ties); rows without image AUROC last."""
    return sorted(
        rows,
        key=lambda row: (row["image_AUROC"] is None, -(row["image_AUROC"] or 0), -(row["pixel_AUROC"] or 0)),
    )


def comparison_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The comparison's Markdown: the setting, then the ranked table, or, without defects, the unranked one."""
    first = rows[0]
    rate = first["false_alarm_rate"]
    lines = [
        f"# {title}",
        "",
        (
            f"Seed {first['seed']}, {first['epochs']} training epoch{'s' if first['epochs'] != 1 else ''} "
            f"(AAND: {first['epochs']} per stage), "
            f"{first['image_size']} px, batch {first['batch_size']}, teacher {first['teacher']}, "
            f"trained on {first['hardware']}."
        ),
    ]
    if rate is not None:
        from anomalib_kd_ext.post_processing import expected_false_alarms

        held_out = first["validation_good_images"] or 0
        expected = expected_false_alarms(rate, held_out) if held_out else float("nan")
        too_few = (
            f" (too few for {percent(rate)}: the threshold is their highest score, which flags about "
            f"{percent(expected)} of good parts; hold out at least {math.ceil(1 / rate) - 1})"
            if expected > rate
            else f" (expected share of new good parts flagged: {percent(expected)})"
        )
        lines += [
            "",
            (
                f"Alarm threshold of every model: at most {percent(rate)} of good parts flagged, set on {held_out} "
                f"good images held out of training{too_few}. Recall (share of defective test images flagged) and "
                "good flagged (share of good test images flagged) are on test images the threshold never saw."
            ),
        ]
    has_defects = any(row["test_defective_images"] for row in rows)
    speed = "train s | ms/image (CPU, batch 1) |"
    if not has_defects:
        lines += [
            "",
            (
                "**No defective images: accuracy cannot be compared without them, so nothing is ranked.** Below, "
                "each model's alarm threshold (its raw image score), the share of good test images it flags, and "
                "its training and scoring time. Add defective images (`test/defect`) to compare accuracy."
            ),
            "",
            f"| model | alarm threshold (raw score) | good test images | good flagged | {speed}",
            "|---|---|---|---|---|---|",
        ]
        for row in sorted(rows, key=lambda row: row["model"]):
            cells = [
                _cell(row["image_threshold"], 4),
                str(row["test_good_images"] or 0),
                _cell(row["good_flagged"]),
                _cell(row["train_seconds"], 0),
                _cell(row["inference_ms_per_image"], 1),
            ]
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    recall = f"recall at {percent(rate)} false alarms" if rate is not None else "recall"
    lines += [
        "",
        (
            f"Ranked by image AUROC on {first['test_defective_images']} defective and {first['test_good_images']} "
            "good test images (pixel AUROC breaks ties); pixel metrics need masks."
        ),
        "",
        f"| rank | model | image AUROC | pixel AUROC | pixel AUPRO | {recall} | good flagged | {speed}",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, row in enumerate(ranked(rows), start=1):
        cells = [
            *(_cell(row[name]) for name in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")),
            _cell(row["recall_at_false_alarm"]),
            _cell(row["good_flagged"]),
            _cell(row["train_seconds"], 0),
            _cell(row["inference_ms_per_image"], 1),
        ]
        position = str(rank) if row["image_AUROC"] is not None else "–"  # noqa: RUF001  # en dash: no rank
        lines.append(f"| {position} | {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pick_images(predictions: dict[str, dict[str, Any]], most: int = 3, least: int = 2) -> list[str]:
    """The test images all models scored, most anomalous first then least anomalous, by the models' mean score.

    Scores are the post-processed ones (0.5 is each model's own threshold), so the mean weighs the models alike.
    """
    index = {model: {path: i for i, path in enumerate(scored["paths"])} for model, scored in predictions.items()}
    common = set.intersection(*(set(paths) for paths in index.values()))
    mean = {
        path: sum(float(predictions[model]["scores"][index[model][path]]) for model in predictions) / len(predictions)
        for path in common
    }
    order = sorted(mean, key=lambda path: (-mean[path], path))
    if len(order) <= most + least:
        return order
    return order[:most] + order[-least:]


def heatmap_picture(predictions: dict[str, dict[str, Any]], path: Path, most: int = 3, least: int = 2) -> list[str]:
    """One picture: the same test images (rows) with each model's heat map (columns); returns the images shown.

    Heat maps are the post-processed maps (0.5 is the model's pixel threshold, colour range 0 to 1), so the colours
    mean the same for every model; each cell gives the model's image score and whether it flagged the image.
    """
    import torch
    from matplotlib.figure import Figure  # no pyplot: no global backend to switch
    from PIL import Image

    images = pick_images(predictions, most, least)
    models = list(predictions)
    size = 128
    figure = Figure(figsize=(2.1 * (len(models) + 1), 2.35 * len(images) + 0.4))
    axes = figure.subplots(len(images), len(models) + 1, squeeze=False)
    for row, image_path in enumerate(images):
        with Image.open(image_path) as image:
            picture = image.convert("RGB").resize((size, size))
        first = predictions[models[0]]
        label = "defect" if int(first["labels"][first["paths"].index(image_path)]) else "good"
        name = Path(image_path)
        axes[row][0].imshow(picture)
        axes[row][0].set_title(f"{label}: {name.parent.name}/{name.name}"[-30:], fontsize=8)
        axes[row][0].set_ylabel("most anomalous" if row < most else "least anomalous", fontsize=8)
        for column, model in enumerate(models, start=1):
            scored = predictions[model]
            index = scored["paths"].index(image_path)
            heat = scored["maps"][index].float()[None, None]
            heat = torch.nn.functional.interpolate(heat, size=(size, size), mode="bilinear", align_corners=False)
            axis = axes[row][column]
            axis.imshow(picture)
            axis.imshow(heat[0, 0].clamp(0, 1).numpy(), cmap="jet", vmin=0, vmax=1, alpha=0.45)
            verdict = "flagged" if bool(scored["flagged"][index]) else "passed"
            axis.set_title(f"{model}\nscore {float(scored['scores'][index]):.2f}, {verdict}", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(
        "Most and least anomalous test images (mean score of all models); heat 0.5 = each model's threshold",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return images
