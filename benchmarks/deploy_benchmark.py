# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Deployment speed of AAND, DSKD and anomalib's KD models: torch eager vs OpenVINO FP32 vs OpenVINO INT8.

For every model and matched teacher, at 256x256 on the CPU:

- parameters (whole inference graph) and GFLOPs (``torch.utils.flop_counter``, one image; 1 multiply-add = 2 FLOPs);
- latency, batch 1, synchronous: median ms of ``--repeats`` runs after warm-up (torch eager, OpenVINO FP32, INT8;
  OpenVINO models compiled with the batch axis fixed to 1, as the folder scorer does, and, for comparison, as
  anomalib exports them (dynamic batch axis), all timed in alternating rounds so that their ratios survive a shared
  machine's changing load);
- throughput, images/s: torch eager at batch 8, OpenVINO with the THROUGHPUT hint and an asynchronous queue;
- OpenVINO BF16 (``INFERENCE_PRECISION_HINT: bf16``) where the CPU plugin lists BF16 among its
  ``OPTIMIZATION_CAPABILITIES``, else the row says why it is missing;
- a roofline of this machine, measured with models built with OpenVINO's own API (a 3x3 convolution and a large
  MatMul in FP32, BF16 where supported and INT8 quantised by NNCF; an element-wise add for memory bandwidth), and
  per model the GFLOPs of each stage (the torch model's children: teacher, RAA / students, anomaly map; the rest is
  pre- and post-processing), achieved GFLOP/s and the fraction of the measured peak of its precision;
- OpenVINO's per-node performance counters (``PERF_COUNT``) of the FP32 and INT8 models, summed by layer type and
  kernel, with the time share of nodes that run in FP32 inside the INT8 model
  (``deploy_<teacher>_<cpu>_<threads>t_profile.json``).

The ISA flags of the CPU (``/proc/cpuinfo``) and OpenVINO's capabilities are read at run time and written to every
row; nothing about the hardware is assumed.

Pairs with the same teacher (``--teacher``): ``paper`` = AAND vs anomalib ``ReverseDistillation`` on
WideResNet-50-2 and DSKD vs anomalib ``Stfpm`` on ResNet18; ``lite0`` = the same four on EfficientNet-Lite0
(anomalib's ReverseDistillation has decoders for ResNets only, so its place is taken by AAND with RAA and HKD off,
which is plain reverse distillation with a generated decoder). Speed does not depend on weight values: the models
are randomly initialised (the Lite0 teachers carry their real ImageNet weights), with placeholder post-processing
statistics, and INT8 is calibrated on random images. Accuracy before/after INT8 is measured on trained models by
``benchmarks/int8_accuracy.py``.

Results are printed and saved to ``benchmarks/results/deploy_<teacher>_<cpu>-<isa>_<threads>t.csv`` (named after the
hardware read at run time: CPU name and widest ISA extension, e.g. ``avx2`` or ``avx512-vnni``).

Example (the tables in README.md came from these commands, run from the repository root on an idle machine):

    python -m benchmarks deploy --teacher lite0
    python -m benchmarks deploy --teacher paper
    python -m benchmarks deploy --roofline-only   # the machine's peaks alone, ~1 min
"""

import argparse
import json
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
from torch.utils.flop_counter import FlopCounterMode

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.models.components.teacher import save_timm_local_dir
from anomalib_kd_ext.teachers import LITE0_PACKAGE_WEIGHTS
from benchmarks.common import LITE0, cpu_flags, cpu_name
from benchmarks.tables import save_rows

IMAGE_SIZE = 256
# ISA extensions that decide which kernels OpenVINO and torch can use (looked up in /proc/cpuinfo at run time).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")


def isa_flags() -> str:
    """The ISA extensions of :data:`ISA_FLAGS` this CPU reports, space separated (empty if unknown)."""
    return cpu_flags(ISA_FLAGS)


def isa_tier() -> str:
    """The widest vector / dot-product extension of this CPU among :data:`ISA_FLAGS` (names the result files)."""
    present = isa_flags().split()
    for flag in ("amx_int8", "avx512_vnni", "avx512f", "avx_vnni", "avx2"):
        if flag in present:
            return flag.replace("_", "-")
    return "generic"


def openvino_capabilities() -> list[str]:
    """OpenVINO CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (e.g. FP32, BF16, INT8)."""
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _conv_model(channels: int = 256, size: int = 56) -> tuple[ov.Model, float]:
    """A 3x3 convolution (``channels`` in and out, ``size`` x ``size``) built with OpenVINO's opset, and its GFLOPs."""
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    data = ops.parameter([1, channels, size, size], np.float32, name="x")
    weights = ops.constant(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05)
    conv = ops.convolution(data, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    return ov.Model([ops.relu(conv)], [data], "conv3x3"), 2 * channels * channels * 9 * size * size / 1e9


def _matmul_model(size: int = 1024) -> tuple[ov.Model, float]:
    """A ``size`` x ``size`` by ``size`` x ``size`` MatMul with constant weights, and its GFLOPs."""
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    data = ops.parameter([size, size], np.float32, name="x")
    weights = ops.constant(rng.standard_normal((size, size)).astype(np.float32) * 0.05)
    matmul = ops.matmul(data, weights, transpose_a=False, transpose_b=False)
    return ov.Model([matmul], [data], "matmul"), 2 * size**3 / 1e9


def _int8(model: ov.Model) -> ov.Model:
    """``model`` quantised by NNCF (weights and activations INT8) on random calibration inputs."""
    import nncf

    shape = tuple(model.inputs[0].get_partial_shape().to_shape())
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    return nncf.quantize(model, nncf.Dataset(samples), subset_size=4)


def _best_ms(compiled: ov.CompiledModel, inputs: np.ndarray, repeats: int) -> float:
    """Fastest of ``repeats`` synchronous runs after warm-up: a peak is the best the machine does, not its median."""
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: inputs}, share_inputs=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: inputs}, share_inputs=True)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def roofline(repeats: int = 50) -> dict:
    """Measured peaks of OpenVINO on this CPU: GFLOP/s per precision (best of a conv and a MatMul), memory GB/s."""
    from openvino import opset13 as ops

    core = ov.Core()
    capabilities = openvino_capabilities()
    precisions = ["f32", *(["bf16"] if "BF16" in capabilities else []), "i8"]
    peaks: dict[str, float] = {}
    details: dict[str, float] = {}
    for name, (model, gflops) in {"conv3x3": _conv_model(), "matmul1024": _matmul_model()}.items():
        inputs = np.random.default_rng(0).standard_normal(tuple(model.inputs[0].get_shape())).astype(np.float32)
        for precision in precisions:
            target = _int8(model) if precision == "i8" else model
            hint = "f32" if precision == "i8" else precision
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
            rate = gflops / (_best_ms(core.compile_model(target, "CPU", config), inputs, repeats) / 1000)
            details[f"{name}_{precision}_GFLOP_s"] = round(rate, 1)
            peaks[precision] = max(peaks.get(precision, 0.0), rate)
    elements = 16 * 1024 * 1024  # two 64 MB inputs, one 64 MB output: far beyond the caches
    left = ops.parameter([elements], np.float32, name="a")
    right = ops.parameter([elements], np.float32, name="b")
    add = core.compile_model(
        ov.Model([ops.add(left, right)], [left, right], "add"),
        "CPU",
        {"PERFORMANCE_HINT": "LATENCY"},
    )
    request = add.create_infer_request()
    values = np.ones(elements, np.float32)
    times = []
    for _ in range(3 + repeats // 5):
        start = time.perf_counter()
        request.infer({0: values, 1: values}, share_inputs=True)
        times.append(time.perf_counter() - start)
    milliseconds = 1000 * min(times[3:])
    return {
        **{f"peak_{precision}_GFLOP_s": round(rate, 1) for precision, rate in peaks.items()},
        "memory_GB_s": round(3 * 4 * elements / (milliseconds / 1000) / 1e9, 1),
        **details,
        "isa_flags": isa_flags(),
        "openvino_capabilities": " ".join(capabilities),
    }


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
    # Through the post-processor's checkpoint format (its state dict): thresholds 0.5, minima 0, maxima 1.
    state = model.post_processor.state_dict()
    for key, value in state.items():
        fill = 0.5 if key.endswith("threshold") else 0.0 if key.endswith("min") else 1.0
        state[key] = torch.full_like(value, fill)
    model.post_processor.load_state_dict(state)


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


def stage_flops(counts: dict[str, dict], children: list[str]) -> dict[str, int]:
    """FLOPs per child of the torch model (teacher, RAA / students, anomaly map) from FlopCounterMode's module counts.

    A child that is called itself is counted as ``<Class>.model.<child>``; a container that is not (AAND's RAA
    ``ModuleList``) as the sum of its called members, ``<Class>.model.<child>.<member>``.
    """
    stages = {}
    for child in children:
        direct = [flops for key, flops in counts.items() if key.split(".")[1:] == ["model", child]]
        members = [
            flops for key, flops in counts.items() if key.split(".")[1:3] == ["model", child] and key.count(".") == 3
        ]
        found = direct or members
        if found:
            stages[child] = sum(sum(flop.values()) for flop in found)
    return stages


def torch_numbers(model: torch.nn.Module, repeats: int) -> dict:
    """Parameters, GFLOPs, batch-1 latency and batch-8 throughput of the eager model.

    Pre- and post-processing included, as in the exported graph.
    """
    image = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.rand(8, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        counter = FlopCounterMode(display=False, depth=4)
        with counter:
            model(image)
        latency = median_ms(lambda: model(image), repeats)
        batch_ms = median_ms(lambda: model(batch), max(3, repeats // 8), warmup=1)
    total = counter.get_total_flops()
    stages = stage_flops(counter.get_flop_counts(), [name for name, _ in model.model.named_children()])
    breakdown = {f"GFLOPs_{stage}": round(flops / 1e9, 3) for stage, flops in stages.items()}
    breakdown["GFLOPs_pre_post"] = round((total - sum(stages.values())) / 1e9, 3)
    return {
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "GFLOPs": round(total / 1e9, 2),
        "GFLOPs_stages": " ".join(f"{key[7:]}={value}" for key, value in breakdown.items()),
        "torch_latency_ms": round(latency, 1),
        "torch_throughput_img_s": round(8000 / batch_ms, 1),
    }


def static_model(path: Path) -> ov.Model:
    """The IR at ``path`` with its batch axis fixed to 1, as the folder scorer compiles it."""
    model = ov.Core().read_model(str(path))
    model.reshape({model.inputs[0]: ov.PartialShape([1, 3, IMAGE_SIZE, IMAGE_SIZE])})
    return model


def interleaved_latency_ms(
    variants: dict[str, tuple[ov.Model, str]],
    repeats: int,
    rounds: int = 5,
) -> dict[str, float]:
    """Batch-1 synchronous latency (LATENCY hint) of each variant, median of ``repeats`` runs taken in ``rounds``.

    The variants take turns (round 1 of each, then round 2 ...), so that a change in the load of a shared machine
    hits all of them alike and their ratios stay fair. ``variants`` maps a name to (model, precision hint).
    """
    core = ov.Core()
    image = np.random.default_rng(0).random((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    requests = {
        name: core.compile_model(
            model,
            "CPU",
            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint},
        ).create_infer_request()
        for name, (model, hint) in variants.items()
    }
    times: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(rounds):
        for name, request in requests.items():
            for index in range(3 + max(1, repeats // rounds)):
                start = time.perf_counter()
                request.infer({0: image})
                if index >= 3:  # warm-up
                    times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def openvino_profile_and_throughput(model: ov.Model, precision: str, repeats: int) -> tuple[dict, float]:
    """OpenVINO's performance counters summed by (layer type, kernel), ms per image; THROUGHPUT-hint images/s."""
    core = ov.Core()
    image = np.random.default_rng(0).random((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision, "PERF_COUNT": True}
    profiled = core.compile_model(model, "CPU", config).create_infer_request()
    profile: dict[str, float] = {}
    for _ in range(repeats):
        profiled.infer({0: image})
        for node in profiled.profiling_info:
            if node.status == ov.ProfilingInfo.Status.EXECUTED:
                key = f"{node.node_type} [{node.exec_type}]"
                profile[key] = profile.get(key, 0.0) + node.real_time.total_seconds() * 1000 / repeats
    compiled = core.compile_model(
        model,
        "CPU",
        {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision},
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
    return dict(sorted(((key, round(ms, 3)) for key, ms in profile.items()), key=lambda item: -item[1])), throughput


def fp32_share(profile: dict[str, float]) -> float:
    """Fraction of the profiled time spent in kernels that compute in FP32 (``f32`` in OpenVINO's kernel name)."""
    total = sum(profile.values())
    return sum(ms for key, ms in profile.items() if "f32" in key.split("[")[-1]) / total if total else 0.0


def export_openvino(model: torch.nn.Module, directory: Path) -> tuple[Path, Path, Path | None]:
    """FP32 IR through anomalib's exporter, and INT8 IRs quantised by NNCF on random calibration images.

    INT8 leaves out what the model's own ``INT8_PTQ`` export leaves out (``ignored_scope``: the anomaly-map tail and
    the stems of AAND and DSKD), so the timed graph is the one users get; anomalib's models are quantised whole, as
    anomalib does. For models with their own scope a second INT8 IR leaves out the tail only (the stems quantised),
    to time what keeping the stems in FP32 costs; ``None`` for the others.
    """
    import nncf

    from anomalib_kd_ext.models.components import anomaly_map_tail

    fp32 = model.to_openvino(directory / "fp32", onnx_kwargs={"opset_version": 18})
    rng = np.random.default_rng(0)
    samples = [rng.random((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32) for _ in range(16)]
    fp32_model = ov.Core().read_model(str(fp32))
    ignored = getattr(model, "ignored_scope", lambda _: [])(fp32_model)
    int8_model = nncf.quantize(
        fp32_model,
        nncf.Dataset(samples),
        subset_size=16,
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
    )
    int8 = directory / "int8" / "model.xml"
    int8.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(int8_model, str(int8))
    if not ignored:
        return fp32, int8, None
    fp32_model = ov.Core().read_model(str(fp32))
    tail_only = nncf.quantize(
        fp32_model,
        nncf.Dataset(samples),
        subset_size=16,
        ignored_scope=nncf.IgnoredScope(names=anomaly_map_tail(fp32_model), validate=False),
    )
    int8_tail = directory / "int8_tail_only" / "model.xml"
    int8_tail.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(tail_only, str(int8_tail))
    return fp32, int8, int8_tail


def main() -> None:
    """Measure the roofline, then every model of the chosen pairing; print and save the table and the profiles."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", choices=["lite0", "paper"], default="lite0")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--roofline-only", action="store_true", help="measure and save the machine's peaks only")
    args = parser.parse_args()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    # CPU name and ISA tier, so that runs on an AVX2 and an AVX-512 machine of the same name do not overwrite
    slug = re.sub(r"\W+", "-", cpu_name()).strip("-").lower() + "-" + isa_tier()
    hardware = f"{cpu_name()}, {threads} threads"
    peaks = roofline() | {"hardware": hardware, "openvino": ov.__version__}
    print(peaks, flush=True)
    save_rows([peaks], Path(args.out), f"roofline_{slug}_{threads}t")
    if args.roofline_only:
        return
    bf16 = "BF16" in peaks["openvino_capabilities"]
    rows, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, model in build_models(args.teacher, work).items():
            row = {
                "model": name,
                "teacher": args.teacher,
                "image_size": IMAGE_SIZE,
                **torch_numbers(model, args.repeats),
            }
            fp32, int8, int8_tail = export_openvino(model, work / re.sub(r"\W+", "_", name))
            variants = [
                ("ov_fp32", fp32, "f32", "f32"),
                *([("ov_bf16", fp32, "bf16", "bf16")] if bf16 else []),
                ("ov_int8", int8, "f32", "i8"),
            ]
            models = {prefix: (static_model(path), hint) for prefix, path, hint, _ in variants}
            # anomalib's export as it is (dynamic batch axis), to show what fixing the batch to 1 changes
            dynamic = {
                f"{prefix}_dynamic_batch": (ov.Core().read_model(str(path)), "f32")
                for prefix, path in (("ov_fp32", fp32), ("ov_int8", int8))
            }
            # INT8 with the stems quantised too (only the tail in FP32): what the stems rule costs
            tail_only = {"ov_int8_tail_only": (static_model(int8_tail), "f32")} if int8_tail else {}
            latencies = interleaved_latency_ms(models | dynamic | tail_only, args.repeats)
            for key in [*dynamic, *tail_only]:
                row[f"{key}_latency_ms"] = round(latencies[key], 1)
            for prefix, _, hint, peak in variants:
                profile, throughput = openvino_profile_and_throughput(models[prefix][0], hint, args.repeats)
                row[f"{prefix}_latency_ms"] = round(latencies[prefix], 1)
                row[f"{prefix}_throughput_img_s"] = round(throughput, 1)
                achieved = row["GFLOPs"] / (latencies[prefix] / 1000)
                row[f"{prefix}_GFLOP_s"] = round(achieved, 1)
                row[f"{prefix}_fraction_of_peak"] = round(achieved / peaks[f"peak_{peak}_GFLOP_s"], 3)
                row[f"{prefix}_fp32_time_share"] = round(fp32_share(profile), 3)
                profiles[f"{name} {prefix}"] = profile
            if not bf16:
                row["ov_bf16_latency_ms"] = "n/a: the CPU plugin lists no BF16 capability on this CPU"
            row["ov_fp32_speedup_vs_torch"] = round(row["torch_latency_ms"] / row["ov_fp32_latency_ms"], 2)
            row["ov_int8_speedup_vs_fp32"] = round(row["ov_fp32_latency_ms"] / row["ov_int8_latency_ms"], 2)
            row |= {
                "hardware": hardware,
                "isa_flags": peaks["isa_flags"],
                "torch": torch.__version__,
                "openvino": ov.__version__,
            }
            rows.append(row)
            print(row, flush=True)
    stem = f"deploy_{args.teacher}_{slug}_{threads}t"
    save_rows(rows, Path(args.out), stem)
    (Path(args.out) / f"{stem}_profile.json").write_text(json.dumps(profiles, indent=1))
    print(
        f"\n{'model':30} {'GFLOPs':>7} {'torch ms':>9} {'OV32 ms':>8} {'INT8 ms':>8} "
        f"{'x32':>5} {'x8':>5} {'peak32':>6}",
    )
    for row in rows:
        print(
            f"{row['model']:30} {row['GFLOPs']:7.2f} {row['torch_latency_ms']:9.1f} {row['ov_fp32_latency_ms']:8.1f} "
            f"{row['ov_int8_latency_ms']:8.1f} {row['ov_fp32_speedup_vs_torch']:5.2f} "
            f"{row['ov_int8_speedup_vs_fp32']:5.2f} {row['ov_fp32_fraction_of_peak']:6.2f}",
        )


if __name__ == "__main__":
    main()
