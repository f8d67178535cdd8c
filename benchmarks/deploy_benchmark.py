# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Deployment speed of AAND, DSKD and anomalib's KD models: torch eager vs OpenVINO FP32 vs OpenVINO INT8.

For every model and matched teacher, at 256x256 on the CPU:

- parameters (whole inference graph) and GFLOPs (``torch.utils.flop_counter``, one image; 1 multiply-add = 2 FLOPs);
- latency, batch 1, synchronous: median ms of ``--repeats`` runs after warm-up (torch eager, OpenVINO FP32, INT8);
- throughput, images/s: torch eager at batch 8, OpenVINO with the THROUGHPUT hint and an asynchronous queue.

Pairs with the same teacher (``--teacher``): ``paper`` = AAND vs anomalib ``ReverseDistillation`` on
WideResNet-50-2 and DSKD vs anomalib ``Stfpm`` on ResNet18; ``lite0`` = the same four on EfficientNet-Lite0
(anomalib's ReverseDistillation has decoders for ResNets only, so its place is taken by AAND with RAA and HKD off,
which is plain reverse distillation with a generated decoder). Speed does not depend on weight values: the models
are randomly initialised (the Lite0 teachers carry their real ImageNet weights), with placeholder post-processing
statistics, and INT8 is calibrated on random images. Accuracy before/after INT8 is measured on trained models by
``benchmarks/int8_accuracy.py``.

Results are printed and saved to ``benchmarks/results/deploy_<cpu>_<threads>t.csv`` (named after the hardware).

Example (the tables in README.md came from these commands, run from the repository root on an idle machine):

    python benchmarks/deploy_benchmark.py --teacher lite0
    python benchmarks/deploy_benchmark.py --teacher paper
"""

import argparse
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from anomalib.models import ReverseDistillation, Stfpm
from anomalib_kd_ext.models.components.teacher import save_timm_local_dir
from common import LITE0, save_rows
from torch.utils.flop_counter import FlopCounterMode

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.models.components import LITE0_PACKAGE_WEIGHTS

IMAGE_SIZE = 256


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo (Linux) or platform."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def build_models(teacher: str, work: Path) -> dict[str, torch.nn.Module]:
    """The four models of one teacher pairing, randomly initialised, post-processing statistics set."""
    if teacher == "paper":
        resnet18 = save_timm_local_dir("resnet18", None, work / "resnet18_random")
        models = {
            "AAND": AAND(backbone="wide_resnet50_2", pre_trained=False),
            "ReverseDistillation": ReverseDistillation(backbone="wide_resnet50_2", pre_trained=False),
            "DSKD": DSKD(backbone="resnet18", pre_trained=False),
            "Stfpm": Stfpm(backbone=resnet18),
        }
    else:
        lite0 = save_timm_local_dir(LITE0["backbone"], LITE0_PACKAGE_WEIGHTS, work / "lite0")
        models = {
            "AAND": AAND(**LITE0, backbone_weights=LITE0_PACKAGE_WEIGHTS),
            "AAND (RAA and HKD off = RD)": AAND(**LITE0, backbone_weights=LITE0_PACKAGE_WEIGHTS, use_raa=False),
            "DSKD": DSKD(**LITE0, backbone_weights=LITE0_PACKAGE_WEIGHTS),
            "Stfpm": Stfpm(backbone=lite0, layers=LITE0["layers"]),
        }
    for model in models.values():
        set_placeholder_statistics(model)
        model.eval()
    return models


def set_placeholder_statistics(model: torch.nn.Module) -> None:
    """Give an untrained model finite post-processing statistics so that it exports (speed measurements only)."""
    post_processor = model.post_processor
    for name, value in (("_image_threshold", 0.5), ("_pixel_threshold", 0.5), ("image_min", 0.0), ("pixel_min", 0.0)):
        getattr(post_processor, name).fill_(value)
    post_processor.image_max.fill_(1.0)
    post_processor.pixel_max.fill_(1.0)


def median_ms(run: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    """Median wall-clock milliseconds of ``run``."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def torch_numbers(model: torch.nn.Module, repeats: int) -> dict:
    """Parameters, GFLOPs, batch-1 latency and batch-8 throughput of the eager model (pre- and post-processing
    included, as in the exported graph)."""
    image = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.rand(8, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(image)
        latency = median_ms(lambda: model(image), repeats)
        batch_ms = median_ms(lambda: model(batch), max(3, repeats // 8), warmup=1)
    return {
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "GFLOPs": round(counter.get_total_flops() / 1e9, 2),
        "torch_latency_ms": round(latency, 1),
        "torch_throughput_img_s": round(8000 / batch_ms, 1),
    }


def openvino_numbers(path: Path, repeats: int, prefix: str) -> dict:
    """Batch-1 synchronous latency (LATENCY hint) and asynchronous throughput (THROUGHPUT hint) of an IR model."""
    core = ov.Core()
    image = np.random.default_rng(0).random((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    compiled = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    latency = median_ms(lambda: request.infer({0: image}), repeats)
    compiled = core.compile_model(
        str(path), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
    )
    queue = ov.AsyncInferQueue(compiled)
    for _ in range(len(queue)):
        queue.start_async({0: image})
    queue.wait_all()
    count = max(16, repeats)
    start = time.perf_counter()
    for _ in range(count):
        queue.start_async({0: image})
    queue.wait_all()
    throughput = count / (time.perf_counter() - start)
    return {f"{prefix}_latency_ms": round(latency, 1), f"{prefix}_throughput_img_s": round(throughput, 1)}


def export_openvino(model: torch.nn.Module, directory: Path) -> tuple[Path, Path]:
    """FP32 IR through anomalib's exporter, and an INT8 IR quantised by NNCF on random calibration images."""
    import nncf

    fp32 = model.to_openvino(directory / "fp32", onnx_kwargs={"opset_version": 18})
    rng = np.random.default_rng(0)
    samples = [rng.random((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32) for _ in range(16)]
    int8_model = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset(samples), subset_size=16)
    int8 = directory / "int8" / "model.xml"
    int8.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(int8_model, str(int8))
    return fp32, int8


def main() -> None:
    """Measure every model of the chosen pairing; print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", choices=["lite0", "paper"], default="lite0")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, model in build_models(args.teacher, work).items():
            row = {
                "model": name,
                "teacher": args.teacher,
                "image_size": IMAGE_SIZE,
                **torch_numbers(model, args.repeats),
            }
            fp32, int8 = export_openvino(model, work / re.sub(r"\W+", "_", name))
            row |= openvino_numbers(fp32, args.repeats, "ov_fp32")
            row |= openvino_numbers(int8, args.repeats, "ov_int8")
            row["ov_fp32_speedup_vs_torch"] = round(row["torch_latency_ms"] / row["ov_fp32_latency_ms"], 2)
            row["ov_int8_speedup_vs_fp32"] = round(row["ov_fp32_latency_ms"] / row["ov_int8_latency_ms"], 2)
            row |= {
                "hardware": f"{cpu_name()}, {threads} threads",
                "torch": torch.__version__,
                "openvino": ov.__version__,
            }
            rows.append(row)
            print(row, flush=True)
    slug = re.sub(r"\W+", "-", cpu_name()).strip("-").lower()
    save_rows(rows, Path(args.out), f"deploy_{args.teacher}_{slug}_{threads}t")
    print(f"\n{'model':30} {'GFLOPs':>7} {'torch ms':>9} {'OV32 ms':>8} {'INT8 ms':>8} {'x32':>5} {'x8':>5}")
    for row in rows:
        print(
            f"{row['model']:30} {row['GFLOPs']:7.1f} {row['torch_latency_ms']:9.1f} {row['ov_fp32_latency_ms']:8.1f} "
            f"{row['ov_int8_latency_ms']:8.1f} {row['ov_fp32_speedup_vs_torch']:5.2f} {row['ov_int8_speedup_vs_fp32']:5.2f}",
        )


if __name__ == "__main__":
    main()
