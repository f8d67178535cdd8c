# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Accuracy of trained models before and after export: torch eager vs OpenVINO FP32, FP16 and INT8 (NNCF PTQ).

Each checkpoint is exported with anomalib's exporter, as ``anomalib export --compression_type INT8_PTQ --data ...``
does. anomalib calibrates INT8 on the datamodule's *validation* split, which for ``MVTecAD`` is the test split; here
the calibration datamodule takes its validation split from the training images (``val_split_mode="from_train"``),
so no test image is seen before scoring. Every variant scores the same test images from their raw files through the
whole exported graph (pre-processing, model, post-processing).
Ground-truth masks are resized (nearest) to the map size, as anomalib's pre-processor does during testing.

Datasets as in the grid (``--dataset mvtec:<category>``, ``battery_weld``, ``folder:<name>=<root>``; default
``mvtec:bottle``). ``NAME`` of ``--ckpt`` is one of AAND, RD (the grid's AAND with RAA and HKD off), DSKD, Stfpm.
Prints and saves image AUROC, pixel AUROC and the drift of each export from torch, and ``heldout_map_error``: the
mean absolute difference of the export's anomaly maps from torch's on the training images INT8 was not calibrated on,
relative to the maps' mean (a fidelity number that needs no test label); ``score_change`` and ``close_pairs`` (see
:func:`close_pairs`) say how many test pairs the export's score changes can reorder. All go to
``benchmarks/results/int8_accuracy_<category>.csv`` (rows of other checkpoints from earlier runs are kept).
Examples (run from the repository root; checkpoints from the ablation benchmarks and the 30-epoch grid's work dir):

    python -m benchmarks int8-accuracy \
        --ckpt DSKD=results/dskd_ablation/dskd_bottle_seed42/DSKD/MVTecAD/bottle/v0/weights/lightning/model.ckpt
    python -m benchmarks int8-accuracy --dataset battery_weld \
        --ckpt AAND=results/grid/AAND_folder_battery_weld_seed1/AAND/battery_weld/v0/weights/lightning/model.ckpt
"""

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from anomalib.data import AnomalibDataModule
from anomalib.deploy import CompressionType, ExportType
from anomalib.engine import Engine
from anomalib.metrics import AUROC
from anomalib.models import Stfpm
from torch.nn import functional

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.models.components import kd_evaluator
from benchmarks import grid
from benchmarks.common import hardware
from benchmarks.tables import save_rows

CLASSES = {"AAND": AAND, "RD": AAND, "DSKD": DSKD, "Stfpm": Stfpm}


def evaluate(predict: Callable[[torch.Tensor], dict], datamodule: AnomalibDataModule) -> dict:
    """Image and pixel AUROC of ``predict`` (raw image batch → anomalib outputs) on the test split."""
    image_auroc = AUROC(fields=["pred_score", "gt_label"], prefix="image_")
    pixel_auroc = AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False)
    scores, labels = [], []
    for batch in datamodule.test_dataloader():
        outputs = predict(batch.image)
        anomaly_map = outputs["anomaly_map"].reshape(len(batch.image), *outputs["anomaly_map"].shape[-2:])
        gt_mask = functional.interpolate(
            batch.gt_mask[:, None].float(),
            size=anomaly_map.shape[-2:],
            mode="nearest",
        )[:, 0]
        scored = batch.update(
            pred_score=outputs["pred_score"].reshape(-1),
            anomaly_map=anomaly_map,
            gt_mask=gt_mask.bool(),
            in_place=False,
        )
        image_auroc.update(scored)
        pixel_auroc.update(scored)
        scores.append(scored.pred_score)
        labels.append(batch.gt_label)
    return {
        "image_AUROC": float(image_auroc.compute()),
        "pixel_AUROC": float(pixel_auroc.compute()),
        "scores": torch.cat(scores),
        "labels": torch.cat(labels).bool(),
    }


def close_pairs(reference: dict, scores: torch.Tensor) -> dict:
    """How far an export's image scores moved from ``reference``'s, and how many pairs that can reorder.

    ``score_change``: mean absolute change of the test images' scores; ``close_pairs``: the share of (normal,
    anomalous) test pairs whose reference scores are closer than that change, i.e. the pairs whose order, and so
    image AUROC, a change of that size can flip.
    """
    change = float((scores - reference["scores"]).abs().mean())
    normal = reference["scores"][~reference["labels"]]
    anomalous = reference["scores"][reference["labels"]]
    if not len(normal) or not len(anomalous):
        return {"score_change": round(change, 5), "close_pairs": None}
    gaps = (anomalous[:, None] - normal[None, :]).abs()
    return {"score_change": round(change, 5), "close_pairs": round(float((gaps < change).float().mean()), 4)}


def map_error(
    predict: Callable[[torch.Tensor], dict],
    batches: list[torch.Tensor],
    reference: list[torch.Tensor],
) -> float | None:
    """Mean absolute difference of ``predict``'s anomaly maps from ``reference``'s, relative to their mean magnitude.

    Measured on training images that INT8 was not calibrated on: a fidelity number that needs no test label.
    """
    if not batches:
        return None
    difference = sum(
        float((predict(images)["anomaly_map"].reshape(ref.shape) - ref).abs().sum())
        for images, ref in zip(batches, reference, strict=True)
    )
    magnitude = sum(float(ref.abs().sum()) for ref in reference)
    return round(difference / magnitude, 4) if magnitude else None


def openvino_predictor(path: Path, precision: str = "f32") -> Callable[[torch.Tensor], dict]:
    """Raw image batch → outputs of a compiled OpenVINO model (inference precision ``precision``), as tensors."""
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})

    def predict(images: torch.Tensor) -> dict:
        result = compiled(np.ascontiguousarray(images.numpy()))
        return {output.get_any_name(): torch.from_numpy(np.asarray(result[output])) for output in compiled.outputs}

    return predict


def main() -> None:
    """Evaluate every checkpoint in torch and after export; print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="NAME=path, NAME one of " + ", ".join(CLASSES))
    parser.add_argument("--dataset", default="mvtec:bottle", help="as the grid's --datasets (one)")
    grid.add_dataset_roots(parser)
    parser.add_argument(
        "--calibration-ratio",
        type=float,
        default=0.5,
        help="share of the training images INT8 is calibrated on (default 0.5)",
    )
    parser.add_argument(
        "--int8-studies",
        nargs="*",
        default=[],
        choices=["tail-only", "accuracy-control"],
        help="extra INT8 rows: 'tail-only' (only the anomaly-map tail in FP32, the stems quantised, as before the "
        "stems rule) and 'accuracy-control' (NNCF's quantize_with_accuracy_control, held-out map error as its metric)",
    )
    parser.add_argument(
        "--max-map-error",
        type=float,
        default=0.05,
        help="accuracy-control: largest held-out map error NNCF may leave (default 0.05)",
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    dataset, category, root = grid.parse_dataset(args.dataset, args)
    loader_args = argparse.Namespace(batch_size=8, num_workers=2, elpv_max_train=None)
    datamodule = grid.make_datamodule(dataset, category, root, loader_args, seed=0)
    datamodule.setup()
    # INT8 calibration on training images only: no test image is seen before scoring
    calibration = grid.make_datamodule(
        dataset,
        category,
        root,
        loader_args,
        seed=0,
        val_split_mode="from_train",
        val_split_ratio=args.calibration_ratio,
    )
    calibration.setup("fit")
    # The training images INT8 is not calibrated on: how far each export's maps are from torch's there, no labels used
    heldout = [batch.image for batch in calibration.train_dataloader()]
    rows = []
    for item in args.ckpt:
        name, _, path = item.partition("=")
        # The benchmarks train Stfpm with the plugin's evaluator (adds AUPRO): rebuild it to load the checkpoint.
        extra = {"evaluator": kd_evaluator()} if name == "Stfpm" else {}
        model = CLASSES[name].load_from_checkpoint(path, **extra).eval()
        engine = Engine(accelerator="cpu", devices=1, logger=False)

        def torch_predict(images: torch.Tensor, model: torch.nn.Module = model) -> dict:
            with torch.no_grad():
                return {k: v for k, v in model(images)._asdict().items() if v is not None}

        variants = {"torch FP32": torch_predict}
        with tempfile.TemporaryDirectory() as tmp:
            for label, compression in (
                ("OpenVINO FP32", None),
                ("OpenVINO FP16", CompressionType.FP16),
                ("OpenVINO INT8 PTQ", CompressionType.INT8_PTQ),
            ):
                xml = engine.export(
                    model,
                    ExportType.OPENVINO,
                    export_root=Path(tmp) / label.replace(" ", "_"),
                    compression_type=compression,
                    datamodule=calibration if compression == CompressionType.INT8_PTQ else None,
                    onnx_kwargs={"opset_version": 18},
                )
                variants[label] = openvino_predictor(xml)
                if compression is None:
                    fp32_xml = xml
                    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                        variants["OpenVINO BF16"] = openvino_predictor(xml, "bf16")  # the FP32 IR run in bfloat16
            for label, study in int8_studies(fp32_xml, calibration, heldout, args).items():
                variants[label] = openvino_predictor(study)
            reference, reference_scores = None, None
            reference_maps = [torch_predict(images)["anomaly_map"] for images in heldout]
            for label, predict in variants.items():
                row = {"model": name, "checkpoint": path, "category": category, "variant": label}
                row["int8_calibration_share"] = args.calibration_ratio
                result = evaluate(predict, datamodule)
                scores = {key: result.pop(key) for key in ("scores", "labels")}
                row |= result
                row["heldout_map_error"] = map_error(predict, heldout, reference_maps)
                row["hardware"] = hardware()
                reference = reference or row  # torch FP32, the first variant
                reference_scores = reference_scores or scores
                row |= close_pairs(reference_scores, scores["scores"])
                for metric in ("image_AUROC", "pixel_AUROC"):
                    row[f"{metric}_drift"] = round(row[metric] - reference[metric], 4)
                rows.append(row)
                print(row, flush=True)
        save_merged(rows, Path(args.out), f"int8_accuracy_{category}")


def int8_studies(
    fp32_xml: Path,
    calibration: AnomalibDataModule,
    heldout: list[torch.Tensor],
    args: argparse.Namespace,
) -> dict[str, Path]:
    """The INT8 variants of ``--int8-studies``, quantised from the FP32 IR with NNCF; label -> model.xml."""
    import nncf

    from anomalib_kd_ext.models.components import anomaly_map_tail

    studies: dict[str, Path] = {}
    core = ov.Core()
    calibration_set = nncf.Dataset([batch.image.numpy() for batch in calibration.val_dataloader()])
    if "tail-only" in args.int8_studies:
        fp32 = core.read_model(str(fp32_xml))
        scope = nncf.IgnoredScope(names=anomaly_map_tail(fp32), validate=False)
        quantised = nncf.quantize(fp32, calibration_set, ignored_scope=scope)
        studies["OpenVINO INT8 PTQ, only the tail FP32"] = save_ir(quantised, fp32_xml, "tail")
    if "accuracy-control" in args.int8_studies and heldout:
        fp32 = core.read_model(str(fp32_xml))
        compiled = core.compile_model(fp32, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        pairs = []  # (held-out batch, its FP32 maps): NNCF may hand the validation function any subset
        for batch in heldout:
            image = batch.numpy()
            pairs.append((image, np.asarray(compiled(image)[compiled.output("anomaly_map")])))
        scale = float(np.mean([np.abs(maps).mean() for _, maps in pairs])) or 1.0

        def fidelity(candidate: ov.CompiledModel, data: list) -> tuple[float, list[float]]:
            errors = [
                float(np.abs(np.asarray(candidate(image)[candidate.output("anomaly_map")]) - maps).mean() / scale)
                for image, maps in data
            ]
            return 1 - float(np.mean(errors)), [1 - error for error in errors]

        quantised = nncf.quantize_with_accuracy_control(
            fp32,
            calibration_set,
            nncf.Dataset(pairs, lambda pair: pair[0]),
            validation_fn=fidelity,
            max_drop=args.max_map_error,
            drop_type=nncf.DropType.ABSOLUTE,
            # Only the tail is ignored, as before the stems rule, so that NNCF finds what to return to FP32 itself.
            ignored_scope=nncf.IgnoredScope(names=anomaly_map_tail(fp32), validate=False),
        )
        label = f"OpenVINO INT8 accuracy control, map error <= {args.max_map_error}"
        studies[label] = save_ir(quantised, fp32_xml, "accuracy_control")
    return studies


def save_ir(model: ov.Model, beside: Path, name: str) -> Path:
    """Save ``model`` as ``<name>/model.xml`` next to the folder of ``beside``; return its path."""
    path = beside.parent.parent / name / "model.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path))
    return path


def save_merged(rows: list[dict], out: Path, stem: str) -> None:
    """Save ``rows`` with the rows of other checkpoints from earlier runs (one checkpoint per run suits a busy CPU)."""
    saved = out / f"{stem}.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else []

    def key(row: dict) -> tuple:
        return row["checkpoint"], row.get("int8_calibration_share", 0.5), row["variant"]

    done = {key(row) for row in rows}
    save_rows([row for row in earlier if key(row) not in done] + rows, out, stem)


if __name__ == "__main__":
    main()
