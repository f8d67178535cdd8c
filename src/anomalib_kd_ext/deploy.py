# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Score a folder of images with an exported OpenVINO model, without the training stack.

Needs only ``openvino``, ``numpy``, ``Pillow`` and ``opencv`` (no torch, no anomalib import), so it runs on a
line PC that received ``model.xml`` + ``model.bin`` from ``anomalib export --export_type openvino``.

Images are read exactly as anomalib reads them for training (``PIL`` → RGB → float in [0, 1]) and handed to
the model at their own size: models exported by anomalib carry their pre-processor (resize to the training
size and normalisation) inside the graph. A model exported with a fixed ``input_size`` gets the image
resized to that size first (bilinear). The anomaly map comes out at the training size and is resized back
to each image for the heat-map overlay.

Writes, under ``--output``: ``scores.csv`` and ``scores.json`` (one row per image: relative path, width,
height, ``pred_score``, ``pred_label``, and the maximum of the anomaly map) and, unless
``--no-overlays``, ``overlays/<relative path>.png`` (heat map over the image). Results are written into a
temporary folder and moved into place at the end, so an error never leaves a half-written output folder.

Example:
    python -m anomalib_kd_ext.deploy results/AAND/.../weights/openvino/model.xml ./line_images --output ./scores
"""

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from openvino import InferRequest

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PERFORMANCE_MODES = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


class DeployError(RuntimeError):
    """A problem with the model file, the image folder or an image, with what to do about it."""


def find_images(folder: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted.

    Raises:
        DeployError: If ``folder`` does not exist or holds no image.
    """
    if not folder.is_dir():
        msg = f"Image folder '{folder}' does not exist. Pass the folder that holds the images to score."
        raise DeployError(msg)
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not images:
        msg = f"No image ({', '.join(extensions)}) found under '{folder}'."
        raise DeployError(msg)
    return images


def read_image(path: Path) -> np.ndarray:
    """Read an image as anomalib does: RGB, float32 in [0, 1], shape (H, W, 3).

    Raises:
        DeployError: If the file cannot be decoded as an image.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        msg = f"Cannot read image '{path}' ({error}). Remove or replace the file, or pass --skip-unreadable."
        raise DeployError(msg) from error


class OpenVINOScorer:
    """An exported anomalib model compiled with OpenVINO, scoring one image at a time.

    Args:
        model_path (str | Path): ``model.xml`` (or ``.onnx``) written by ``anomalib export``.
        device (str): OpenVINO device. Defaults to ``"CPU"``.
        precision (str): OpenVINO's inference precision hint; ``"bf16"`` is faster on CPUs with AVX-512 BF16 but
            moves scores by about 1e-3. Defaults to ``"f32"``.
        mode (str): OpenVINO's performance hint: ``"latency"`` (one image at a time, all cores on it) or
            ``"throughput"`` (OpenVINO picks the number of parallel streams and infer requests for the machine's
            cores; :meth:`score_many` keeps them all busy). Scores do not depend on it. Defaults to ``"latency"``.

    Raises:
        DeployError: If the model file is missing or lacks anomalib's outputs.
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str = "CPU",
        precision: str = "f32",
        mode: str = "latency",
    ) -> None:
        import openvino as ov

        if mode not in PERFORMANCE_MODES:
            msg = f"Unknown mode '{mode}': use one of {sorted(PERFORMANCE_MODES)}."
            raise DeployError(msg)

        model_path = Path(model_path)
        if not model_path.is_file():
            msg = (
                f"Model file '{model_path}' does not exist. Export one with "
                "`anomalib export --model <MODEL> --export_type openvino --ckpt_path <model.ckpt>` "
                "and pass its model.xml."
            )
            raise DeployError(msg)
        if model_path.suffix == ".xml" and not model_path.with_suffix(".bin").is_file():
            msg = f"'{model_path.with_suffix('.bin')}' is missing: copy model.bin next to model.xml."
            raise DeployError(msg)
        core = ov.Core()
        model = core.read_model(str(model_path))
        outputs = {output.get_any_name() for output in model.outputs}
        if not {"pred_score", "anomaly_map"} <= outputs:
            msg = f"'{model_path}' is not an anomalib model: its outputs are {sorted(outputs)}."
            raise DeployError(msg)
        shape = model.inputs[0].get_partial_shape()
        static = shape[2].is_static and shape[3].is_static
        self.input_size = (shape[2].get_length(), shape[3].get_length()) if static else None
        if self.input_size is not None and shape[0].is_dynamic:
            # One image per request: fix anomalib's dynamic batch axis to 1. With it dynamic, OpenVINO 2026.4 runs
            # the element-wise post-processing of an INT8 model unfused on the full-size map (~4 ms of a 16 ms
            # reverse-distillation model on 2 AVX2 cores; FP32 is unaffected); static, it fuses it.
            model.reshape({model.inputs[0]: ov.PartialShape([1, shape[1], *self.input_size])})
        # OpenVINO runs FP32 models in bf16 by default on CPUs with AVX-512 BF16 (2026 releases); ask for the
        # precision explicitly so that scores match the torch model unless bf16 is chosen.
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": PERFORMANCE_MODES[mode]}
        self.compiled = core.compile_model(model, device, config)
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray | float | bool]:
        """Score one (H, W, 3) float image; the map is returned at the image's own size."""
        result = self.compiled(self._prepare(image))
        return self._finish({output.get_any_name(): result[output] for output in self.compiled.outputs}, image)

    def score_many(self, items: Iterable[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, np.ndarray, dict]]:
        """Score ``(key, image)`` pairs with all of OpenVINO's infer requests in flight.

        The requests take the images in turn (round robin), so waiting for the oldest one yields the predictions
        in input order, ``(key, image, prediction)``, with no callback threads; at most ``requests`` images are held.
        """
        requests = [self.compiled.create_infer_request() for _ in range(self.requests)]
        names = [output.get_any_name() for output in self.compiled.outputs]
        in_flight: deque[tuple[Any, Any, np.ndarray]] = deque()
        try:
            for index, (key, image) in enumerate(items):
                request = requests[index % len(requests)]
                if len(in_flight) == len(requests):
                    yield self._collect(*in_flight.popleft(), names)  # the oldest one, on this same request
                request.start_async(self._prepare(image))
                in_flight.append((request, key, image))
            while in_flight:
                yield self._collect(*in_flight.popleft(), names)
        finally:
            for request, _, _ in in_flight:  # reading an image failed, or the caller stopped early
                request.wait()

    def _collect(
        self,
        request: "InferRequest",
        key: object,
        image: np.ndarray,
        names: list[str],
    ) -> tuple[Any, np.ndarray, dict]:
        request.wait()
        outputs = {name: request.get_tensor(name).data.copy() for name in names}
        return key, image, self._finish(outputs, image)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        import cv2

        if self.input_size is not None and image.shape[:2] != self.input_size:
            image = cv2.resize(image, self.input_size[::-1], interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None])

    @staticmethod
    def _finish(outputs: dict[str, np.ndarray], image: np.ndarray) -> dict[str, np.ndarray | float | bool]:
        import cv2

        height, width = image.shape[:2]
        anomaly_map = cv2.resize(outputs["anomaly_map"][0, 0], (width, height), interpolation=cv2.INTER_LINEAR)
        score = float(np.asarray(outputs["pred_score"]).reshape(-1)[0])
        label = bool(np.asarray(outputs["pred_label"]).reshape(-1)[0]) if "pred_label" in outputs else score >= 0.5
        return {"pred_score": score, "pred_label": label, "anomaly_map": anomaly_map}


def overlay(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """JET heat map of ``anomaly_map`` (values in [0, 1]) blended over ``image``; uint8 RGB."""
    import cv2

    heat = cv2.applyColorMap((np.clip(anomaly_map, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted((image * 255).astype(np.uint8), 1 - alpha, heat, alpha, 0)


def score_folder(
    model_path: str | Path,
    images: str | Path,
    output: str | Path,
    device: str = "CPU",
    overlays: bool = True,
    skip_unreadable: bool = False,
    mode: str = "throughput",
    precision: str = "f32",
    progress: bool = False,
) -> list[dict]:
    """Score every image under ``images`` and write the results under ``output`` (see the module docstring).

    ``mode`` and ``precision`` are :class:`OpenVINOScorer`'s; ``progress`` prints a progress line to stderr.

    Returns:
        list[dict]: One row per scored image.

    Raises:
        DeployError: On a missing model or folder, or an unreadable image unless ``skip_unreadable``.
    """
    images, output = Path(images), Path(output)
    scorer = OpenVINOScorer(model_path, device=device, precision=precision, mode=mode)
    paths = find_images(images)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as error:
        msg = f"Cannot write results next to '{output}' ({error.strerror}): choose a writable --output folder."
        raise DeployError(msg) from error
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    start = time.perf_counter()
    try:
        for path, image, prediction in scorer.score_many(_read_all(paths, skip_unreadable, skipped)):
            relative = path.relative_to(images)
            if progress:
                _show_progress(len(rows) + 1, len(paths), time.perf_counter() - start)
            rows.append(
                {
                    "image": relative.as_posix(),
                    "width": image.shape[1],
                    "height": image.shape[0],
                    "pred_score": round(prediction["pred_score"], 6),
                    "pred_label": prediction["pred_label"],
                    "anomaly_map_max": round(float(prediction["anomaly_map"].max()), 6),
                },
            )
            if overlays:
                target = (staging / "overlays" / relative).with_suffix(".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(overlay(image, prediction["anomaly_map"])).save(target)
        if not rows:
            msg = f"No image under '{images}' could be read."
            raise DeployError(msg)  # noqa: TRY301  # the except below only removes the staging folder and re-raises
        with (staging / "scores.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        seconds = time.perf_counter() - start
        summary = {
            "model": str(model_path),
            "mode": mode,
            "precision": precision,
            "infer_requests": scorer.requests,
            "seconds": round(seconds, 3),
            "images_per_second": round(len(rows) / seconds, 2),
            "images": rows,
            "skipped": skipped,
        }
        (staging / "scores.json").write_text(json.dumps(summary, indent=1))
        _replace(output, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return rows


def _show_progress(done: int, total: int, seconds: float) -> None:
    end = "\n" if done == total else ""
    print(f"\rscored {done}/{total} images, {done / max(seconds, 1e-9):.1f} images/s", end=end, file=sys.stderr)


def _replace(output: Path, staging: Path) -> None:
    """Put the complete ``staging`` folder at ``output``; a previous ``output`` survives any failure before that."""
    previous = output.with_name(f".{output.name}.previous")
    if previous.exists():
        shutil.rmtree(previous)
    if output.exists():
        output.rename(previous)
    try:
        staging.rename(output)
    except BaseException:
        if previous.exists():
            previous.rename(output)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _read_all(paths: list[Path], skip_unreadable: bool, skipped: list[dict]) -> Iterator[tuple[Path, np.ndarray]]:
    for path in paths:
        try:
            yield path, read_image(path)
        except DeployError as error:  # noqa: PERF203  # per image: an unreadable one is skipped, the rest still read
            if not skip_unreadable:
                raise
            skipped.append({"image": str(path), "error": str(error)})
            print(f"skipped: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m anomalib_kd_ext.deploy``)."""
    parser = argparse.ArgumentParser(prog="python -m anomalib_kd_ext.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model.xml (or model.onnx) written by `anomalib export`")
    parser.add_argument("images", help="folder of images to score (searched recursively)")
    parser.add_argument("--output", default="scores", help="output folder (replaced if it exists)")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (CPU, GPU, AUTO)")
    parser.add_argument("--no-overlays", action="store_true", help="write scores only")
    parser.add_argument("--skip-unreadable", action="store_true", help="skip images that cannot be read (listed)")
    parser.add_argument(
        "--mode",
        choices=sorted(PERFORMANCE_MODES),
        default="throughput",
        help="OpenVINO performance hint: throughput (default: parallel infer requests sized for this machine) or "
        "latency (one image at a time)",
    )
    parser.add_argument(
        "--precision",
        choices=["f32", "bf16", "f16"],
        default="f32",
        help="OpenVINO inference precision hint",
    )
    parser.add_argument("--progress", action="store_true", help="print progress (default: when stderr is a terminal)")
    args = parser.parse_args(argv)
    try:
        rows = score_folder(
            args.model,
            args.images,
            args.output,
            device=args.device,
            overlays=not args.no_overlays,
            skip_unreadable=args.skip_unreadable,
            mode=args.mode,
            precision=args.precision,
            progress=args.progress or sys.stderr.isatty(),
        )
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A full or read-only disk while writing: nothing half-written is left at --output, and what was there stays.
        where = f" ({error.filename})" if error.filename else ""
        print(
            f"error: could not write the results{where}: {error.strerror or error}. Free space or choose another "
            f"--output; '{args.output}' was left as it was.",
            file=sys.stderr,
        )
        return 3
    anomalous = sum(row["pred_label"] for row in rows)
    speed = json.loads((Path(args.output) / "scores.json").read_text())["images_per_second"]
    print(
        f"Scored {len(rows)} images ({anomalous} anomalous, {speed} images/s, {args.mode} mode); "
        f"results in {Path(args.output).resolve()}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
