# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``python -m benchmarks tables``: every result table of the docs, rebuilt from the committed result files.

Each grid's ``grid.md`` is rendered again from its ``grid.csv`` (and ``curves/``), and every result table in the
README, ``docs/`` and the model READMEs sits between two markers::

    <!-- table: deploy deploy_lite0_intel-r-xeon-r-processor-amx-int8_2t -->
    | model | ... |
    <!-- /table -->

and is replaced with what the named renderer makes of the named result (a folder or a CSV stem under
``benchmarks/results``). ``--check`` writes nothing and exits 1 when a file would change (the test suite runs it, so
a table edited by hand or a CSV without its tables fails CI). Run from the repository root.
"""

import argparse
import csv
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks import grid

RESULTS = Path("benchmarks/results")
DOCUMENTS = ["README.md", "docs/*.md", "src/anomalib_kd_ext/models/*/README.md"]
MARKED = re.compile(r"(<!-- table: (?P<name>[\w-]+) (?P<source>[\w./-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
DASH = "–"  # noqa: RUF001  # en dash: the empty cell of every table


def read_csv(stem: str) -> list[dict]:
    """Rows of ``benchmarks/results/<stem>.csv``."""
    path = RESULTS / f"{stem}.csv"
    if not path.is_file():
        msg = f"{path} not found: the table names a result file that is not committed"
        raise FileNotFoundError(msg)
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def number(value: str | float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or the empty cell."""
    if value in {None, "", "None"}:
        return DASH
    try:
        return f"{float(value):.{digits}f}"
    except ValueError:
        return DASH


def signed(value: str | float | None, digits: int = 3) -> str:
    """A drift: ``+0.010``, ``-0.002``, ``0.000``."""
    text = number(value, digits)
    if text == DASH or float(text) == 0:
        return text.lstrip("-")
    return text if text.startswith("-") else "+" + text


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def grid_rows(folder: str) -> list[dict]:
    """Rows of ``benchmarks/results/<folder>/grid.csv``."""
    rows = grid.read_rows(RESULTS / folder / "grid.csv")
    if not rows:
        msg = f"{RESULTS / folder / 'grid.csv'} is missing or empty"
        raise FileNotFoundError(msg)
    return rows


def grid_summary(folder: str) -> str:
    """The main table of a grid's ``grid.md``."""
    return "\n".join(grid.summary_table(grid_rows(folder))) + "\n"


def grid_targets(folder: str) -> str:
    """The targets table of a grid's ``grid.md``, with its caption."""
    return "\n".join(grid.target_lines(grid_rows(folder))) + "\n"


HEADLINE_MODELS = [("Stfpm", "Stfpm"), ("RD", "RD (same teacher)"), ("AAND", "AAND"), ("DSKD", "DSKD")]
DATASET_NAMES = {"mvtec/bottle": "MVTec AD bottle", "folder/battery_weld": "battery weld", "elpv/mono": "ELPV mono"}


def grid_headline(folder: str) -> str:
    """Datasets x the four headline models: mean image / pixel AUROC over seeds (image only without masks)."""
    groups = grid.groups_of(grid_rows(folder))
    datasets = sorted({dataset for dataset, _ in groups}, key=lambda name: list(DATASET_NAMES).index(name))
    seeds = len({row["seed"] for group in groups.values() for row in group})
    epochs = {row["epochs"] for group in groups.values() for row in group}
    rows = []
    for dataset in datasets:
        cells = []
        for model, _ in HEADLINE_MODELS:
            group = groups.get((dataset, model), [])
            means = [
                grid.mean_std([row[metric] for row in group]).split(" ")[0] for metric in ("image_AUROC", "pixel_AUROC")
            ]
            cells.append(means[0] if means[1] == DASH else f"{means[0]} / {means[1]}")
        rows.append([DATASET_NAMES.get(dataset, dataset), *cells])
    budget = f"{min(epochs)} epochs" if len(epochs) == 1 else "epochs per row"
    return markdown([f"{budget}, {seeds} seeds", *(label for _, label in HEADLINE_MODELS)], rows)


SPEED_ROWS = [("RD", "RD"), ("AAND", "AAND (amplification / distillation)"), ("DSKD", "DSKD"), ("Stfpm", "Stfpm")]
SPEED_MODES = ["today", "fast_fp32", "fast_bf16", "floor"]


def train_speed(folder: str) -> str:
    """Seconds per epoch per model (AAND: per stage) and mode, from ``train_speed.csv``."""
    rows = read_csv(f"{folder}/train_speed")
    seconds = {(row["model"], row["stage"], row["mode"]): row["seconds_per_epoch"] for row in rows}
    table = []
    for model, label in SPEED_ROWS:
        stages = [stage for m, stage, _ in seconds if m == model]
        stages = list(dict.fromkeys(stage for stage in ("amplification", "distillation", "train") if stage in stages))
        table.append(
            [label]
            + [" / ".join(number(seconds.get((model, stage, mode)), 1) for stage in stages) for mode in SPEED_MODES],
        )
    header = [
        "model (stage)",
        "anomalib pipeline, 2 workers",
        "cache, fp32",
        "cache, bf16",
        "floor (batches in memory)",
    ]
    return markdown(header, table)


DEPLOY_NAMES = {
    "AAND": "AAND",
    "AAND (RAA and HKD off = RD)": "AAND, RAA and HKD off (reverse distillation)",
    "DSKD": "DSKD",
    "Stfpm": "anomalib Stfpm",
}


def deploy(stem: str) -> str:
    """Latency, speed-up, use of the FP32 peak and throughput per model, from the deploy benchmark's CSV."""
    table = []
    for row in read_csv(stem):

        def ms(key: str, dynamic: str | None = None, row: dict = row) -> str:
            value = number(row.get(key), 1)
            return f"{value} ({number(row.get(dynamic), 1)})" if dynamic else value

        throughput = " / ".join(
            number(row.get(f"ov_{precision}_throughput_img_s"), 0) for precision in ("fp32", "bf16", "int8")
        )
        table.append([
            DEPLOY_NAMES.get(row["model"], row["model"]),
            number(row["GFLOPs"], 2),
            ms("torch_latency_ms"),
            ms("ov_fp32_latency_ms", "ov_fp32_dynamic_batch_latency_ms"),
            ms("ov_bf16_latency_ms"),
            ms("ov_int8_latency_ms", "ov_int8_dynamic_batch_latency_ms"),
            f"{number(row['ov_int8_speedup_vs_fp32'], 2)}x",
            f"{number(row['ov_fp32_GFLOP_s'], 0)} ({number(row['ov_fp32_fraction_of_peak'], 2)})",
            f"{float(row['ov_int8_fp32_time_share']) * 100:.0f} %",
            throughput,
        ])
    header = [
        "model",
        "GFLOPs",
        "torch ms",
        "OV FP32 ms (dynamic)",
        "OV BF16 ms",
        "OV INT8 ms (dynamic)",
        "INT8 vs FP32",
        "FP32 GFLOP/s (of peak)",
        "FP32 kernels in INT8",
        "img/s FP32 / BF16 / INT8 (throughput)",
    ]
    return markdown(header, table)


DRIFT_BAR = 0.005
INT8_NAMES = {"AAND": "AAND", "DSKD": "DSKD", "RD": "AAND, RAA and HKD off (RD)", "Stfpm": "anomalib Stfpm"}


def by_variant(stem: str) -> dict[str, dict[str, dict]]:
    """int8-accuracy rows as model -> variant -> row (models in the order of :data:`INT8_NAMES`)."""
    models: dict[str, dict[str, dict]] = {}
    for row in read_csv(stem):
        models.setdefault(row["model"], {})[row["variant"]] = row
    return dict(sorted(models.items(), key=lambda item: list(INT8_NAMES).index(item[0])))


def int8_drift(stem: str) -> str:
    """Drift of every export against torch FP32 and INT8's held-out map error, from int8-accuracy's CSV."""
    table = []
    for model, variants in by_variant(stem).items():
        torch_row, int8 = variants["torch FP32"], variants["OpenVINO INT8 PTQ"]

        def drift(variant: str, variants: dict = variants) -> str:
            row = variants.get(variant)
            if row is None:
                return DASH
            parts = [row["image_AUROC_drift"], row["pixel_AUROC_drift"]]
            # In bold: a drift at or beyond the 0.005 bar of the deployment targets.
            return " / ".join(f"**{signed(p)}**" if abs(float(p)) >= DRIFT_BAR else signed(p) for p in parts)

        table.append([
            INT8_NAMES[model],
            f"{number(torch_row['image_AUROC'])} / {number(torch_row['pixel_AUROC'])}",
            drift("OpenVINO BF16"),
            drift("OpenVINO FP16"),
            drift("OpenVINO INT8 PTQ"),
            f"{float(int8['heldout_map_error']) * 100:.1f} %",
        ])
    header = [
        "model",
        "torch FP32 image / pixel AUROC",
        "BF16 drift",
        "FP16 drift",
        "INT8 drift",
        "INT8 map error (held out)",
    ]
    return markdown(header, table)


def int8_auroc(stem: str) -> str:
    """Image / pixel AUROC of torch and of every export, and INT8's pixel AUROC change, from int8-accuracy's CSV."""
    variants = ["torch FP32", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8 PTQ"]
    table = []
    for model, rows in by_variant(stem).items():
        cells = [f"{number(rows[v]['image_AUROC'])} / {number(rows[v]['pixel_AUROC'], 4)}" for v in variants]
        change = float(rows["OpenVINO INT8 PTQ"]["pixel_AUROC"]) - float(rows["torch FP32"]["pixel_AUROC"])
        table.append([INT8_NAMES[model], *cells, signed(change, 4)])
    header = ["model", "torch FP32 image / pixel AUROC", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8"]
    return markdown([*header, "pixel AUROC change with INT8"], table)


AAND_VARIANTS = {
    "aand": "AAND (RAA + HKD)",
    "raa_off": "AAND, RAA off (HKD only)",
    "plain_rd": "AAND, RAA and HKD off (plain reverse distillation)",
}


def aand_ablation(stem: str) -> str:
    """AAND's switches: stage lengths and accuracy, from aand-ablation's CSV."""
    table = [
        [
            AAND_VARIANTS.get(row["variant"], row["variant"]),
            row["epochs_stage1"],
            row["epochs_stage2"],
            *(number(row[metric]) for metric in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")),
        ]
        for row in read_csv(stem)
    ]
    header = ["variant", "stage 1 epochs", "stage 2 epochs", "image AUROC", "pixel AUROC", "pixel AUPRO"]
    return markdown(header, table)


DSKD_VARIANTS = {
    "dskd": 'DSKD (`df_source="student"`)',
    "se_only": "DSKD, Sd off (Se only)",
    "sd_only": "DSKD, Se off (Sd only)",
    "dskd_df_teacher": 'DSKD, `df_source="teacher"`',
    "dskd_df_both": 'DSKD, `df_source="both"`',
    "stfpm": "anomalib `Stfpm`, same teacher",
}


def dskd_ablation(stem: str) -> str:
    """DSKD's switches against Stfpm, the best pixel metrics in bold, from dskd-ablation's CSV."""
    rows = sorted(read_csv(stem), key=lambda row: list(DSKD_VARIANTS).index(row["variant"]))
    best = {metric: max(float(row[metric]) for row in rows) for metric in ("pixel_AUROC", "pixel_AUPRO")}
    table = []
    for row in rows:
        cells = [number(row["image_AUROC"])]
        for metric in ("pixel_AUROC", "pixel_AUPRO"):
            cell = number(row[metric])
            cells.append(f"**{cell}**" if float(row[metric]) == best[metric] else cell)
        table.append([DSKD_VARIANTS[row["variant"]], *cells, number(row["trainable_parameters_M"], 2)])
    return markdown(["variant", "image AUROC", "pixel AUROC", "pixel AUPRO", "trainable params (M)"], table)


RENDERERS: dict[str, Callable[[str], str]] = {
    "grid-summary": grid_summary,
    "grid-targets": grid_targets,
    "grid-headline": grid_headline,
    "train-speed": train_speed,
    "deploy": deploy,
    "int8-drift": int8_drift,
    "int8-auroc": int8_auroc,
    "aand-ablation": aand_ablation,
    "dskd-ablation": dskd_ablation,
}


def render_document(text: str, where: str) -> str:
    """``text`` with every marked table rendered again."""

    def replace(match: re.Match) -> str:
        name, source = match["name"], match["source"]
        if name not in RENDERERS:
            msg = f"{where}: unknown table {name!r} (known: {', '.join(RENDERERS)})"
            raise ValueError(msg)
        return match[1] + RENDERERS[name](source) + match[5]

    matches = list(MARKED.finditer(text))
    opened = len(re.findall(r"^<!-- table:", text, re.M))
    if opened != len(matches) or any("<!-- table:" in match["body"] for match in matches):
        msg = f"{where}: a '<!-- table: NAME SOURCE -->' marker without its own '<!-- /table -->' (or malformed)"
        raise ValueError(msg)
    return MARKED.sub(replace, text)


def outdated(root: Path = Path()) -> dict[Path, str]:
    """Every file whose tables differ from their results, with its new text."""
    changes: dict[Path, str] = {}
    for folder in sorted((root / RESULTS).glob("*/grid.csv")):
        new = grid.render_summary(grid.read_rows(folder), folder.parent)
        if not (folder.parent / "grid.md").is_file() or (folder.parent / "grid.md").read_text() != new:
            changes[folder.parent / "grid.md"] = new
    for pattern in DOCUMENTS:
        for path in sorted(root.glob(pattern)):
            text = path.read_text()
            new = render_document(text, str(path))
            if new != text:
                changes[path] = new
    return changes


def main(argv: list[str] | None = None) -> None:
    """Rewrite (or with ``--check`` only list) the tables that differ from the committed results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table is out of date")
    args = parser.parse_args(argv)
    if not RESULTS.is_dir():
        msg = f"no {RESULTS} here: run from the repository root (the tables read the results and docs relative to it)"
        raise SystemExit(msg)
    changes = outdated()
    for path, text in changes.items():
        if args.check:
            print(f"out of date: {path}")
            continue
        path.write_text(text)
        if path.name == "grid.md":
            grid.plot(grid.groups_of(grid.read_rows(path.parent / "grid.csv")), path.parent / "grid.png")
        print(f"rewrote {path}")
    if not changes:
        print("every table matches its results")
    if args.check and changes:
        print("run: python -m benchmarks tables", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
