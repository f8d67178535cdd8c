# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Checks around anomalib's export: refuse what cannot give a usable model, leave nothing half-written.

anomalib's ``to_torch``/``to_onnx``/``to_openvino`` export an untrained model without a word (its
threshold and normalisation statistics are NaN, so every exported score is NaN), and a failed export
leaves an empty or partial ``weights/<format>`` folder behind. :class:`GuardedExportMixin` wraps the
three methods: it checks first, then runs anomalib's own code into a temporary folder and moves the files into
``weights/<format>`` only when all of them are written, so a failed call (an error, a full disk) leaves a previous
export untouched and nothing half-written.

It also keeps the anomaly-map tail of the graph in FP32 under INT8 post-training quantisation. anomalib's
``INT8_PTQ`` hands the whole graph to NNCF, which calibrates every quantiser on normal images; the cosine distances,
the Gaussian blur and the normalisation that follow the features then clip the large values that anomalous images
produce, and every exported score collapses (DSKD on MVTec bottle: image AUROC 0.5). Only the networks are
quantised here; everything downstream of the cosine distances' feature norms runs in FP32.
"""

import errno
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from anomalib.deploy import CompressionType, ExportType
from anomalib.post_processing import PostProcessor

if TYPE_CHECKING:
    import openvino as ov
    from anomalib import TaskType
    from anomalib.data import AnomalibDataModule
    from torchmetrics import Metric

logger = logging.getLogger(__name__)

CALIBRATED_COMPRESSION = {CompressionType.INT8_PTQ, CompressionType.INT8_ACQ}


def check_exportable(model: torch.nn.Module) -> None:
    """Raise if ``model``'s post-processor has no threshold yet (the model was never trained and validated).

    Raises:
        RuntimeError: If the image threshold or the normalisation statistics are unset.
    """
    post_processor = getattr(model, "post_processor", None)
    if not isinstance(post_processor, PostProcessor):
        return  # no post-processing in the graph: raw scores are exported as they are
    unset = [
        name
        for name in ("image_threshold", "image_min", "image_max")
        if torch.isnan(getattr(post_processor, name)).any()
    ]
    if unset:
        msg = (
            f"{type(model).__name__} has not been trained: its post-processor statistics {unset} are unset, so the "
            "exported model would output NaN scores. Train it first (`anomalib train`, `Engine.fit`) or export "
            "from a checkpoint (`anomalib export --ckpt_path <model.ckpt>`, `Engine.export(..., ckpt_path=...)`)."
        )
        raise RuntimeError(msg)


def anomaly_map_tail(model: "ov.Model") -> list[str]:
    """Names of the OpenVINO operations downstream of the cosine distances' feature norms (``ReduceL2``) of ``model``.

    In a cosine-distance KD model this is the anomaly map and its post-processing: the per-layer distances,
    interpolation, sum, blur, normalisation, thresholds and outputs. A ``ReduceL2`` inside the networks (AAND's RAA
    normalises its queries and memory) is not a start: only norms with no further ``ReduceL2`` downstream are, so that
    the student behind RAA is quantised. Empty when the graph has no ``ReduceL2``.
    """
    ops = model.get_ordered_ops()  # topological order

    def consumers(op: "ov.Node") -> list["ov.Node"]:
        return [target.get_node() for output in op.outputs() for target in output.get_target_inputs()]

    norm_below: dict[str, bool] = {}  # a ReduceL2 among the (strict) descendants of an op
    for op in reversed(ops):
        norm_below[op.get_name()] = any(
            child.get_type_name() == "ReduceL2" or norm_below.get(child.get_name(), False) for child in consumers(op)
        )
    pending = [op for op in ops if op.get_type_name() == "ReduceL2" and not norm_below[op.get_name()]]
    tail: dict[str, str] = {}  # unique name -> friendly name (NNCF's ignored scope uses the friendly names)
    while pending:
        op = pending.pop()
        if op.get_name() in tail:
            continue
        tail[op.get_name()] = op.get_friendly_name()
        pending.extend(consumers(op))
    return [name for name in tail.values() if name]


# Operations that end a walk from the image: the networks' first weighted layers (a stem is one of them).
STEM_TYPES = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}


def input_convolutions(model: "ov.Model") -> list[str]:
    """Names of the first weighted layers on every path from the image input of ``model`` (the networks' stems).

    The walk starts at the model's first input (the image), follows the paths of its values (not the shape
    computations that start at ``ShapeOf``) and stops at the first convolution or MatMul of each path. The stem sees
    the normalised image; quantised to 8 bits, its error reaches every feature level of the teacher, which the student
    does not reproduce, so it shows up in the anomaly map: NNCF's accuracy-controlled quantisation of AAND returned
    only this convolution to FP32 to hold the held-out map error within 5 %.
    """
    pending = [target.get_node() for target in model.inputs[0].get_node().output(0).get_target_inputs()]
    seen: set[str] = set()
    stems: dict[str, str] = {}
    while pending:
        op = pending.pop()
        if op.get_name() in seen:
            continue
        seen.add(op.get_name())
        if op.get_type_name() in STEM_TYPES:
            stems[op.get_name()] = op.get_friendly_name()
            continue
        if op.get_type_name() == "ShapeOf":  # a shape computation, not a path of the image's values
            continue
        pending.extend(target.get_node() for output in op.outputs() for target in output.get_target_inputs())
    return [name for name in stems.values() if name]


@contextmanager
def staged_export(export_root: Path | str, export_type: ExportType) -> Iterator[Path]:
    """Export into a temporary root; move the files into ``export_root/weights/<format>`` only once all are written.

    A failed export (an error, a full disk) removes its temporary root and leaves a previous export in
    ``weights/<format>`` untouched; folders it had to create are removed again. Yields the temporary root, which
    lies inside ``export_root`` so that the final move is a rename on the same file system.

    Raises:
        OSError: If ``export_root`` cannot be written (read-only or full disk), with the folder and the fix.
    """
    root = Path(export_root)
    target = root / "weights" / export_type.value
    created = [folder for folder in (root, root / "weights", target) if not folder.exists()]

    def remove_created(keep: Path | None = None) -> None:
        for folder in reversed(created):
            if folder.is_dir() and not any(path for path in folder.iterdir() if path != keep):
                shutil.rmtree(folder, ignore_errors=True)

    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    except OSError as error:
        remove_created()
        msg = f"Cannot write the export to '{root}' ({error.strerror}): choose a writable export root."
        raise OSError(error.errno, msg) from error
    try:
        yield staging
        written = staging / "weights" / export_type.value
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(written.iterdir()):
            path.replace(target / path.name)
    except BaseException as error:
        remove_created(keep=staging)
        # OpenVINO's save_model reports a full disk as "RuntimeError: basic_ios::clear: iostream error"; name it.
        if isinstance(error, Exception) and not isinstance(error, OSError) and _disk_full(root):
            msg = (
                f"Could not write the export to '{root}': the disk is full ({type(error).__name__}: {error}). "
                f"Free space or choose another export root; a previous export in '{target}' is unchanged."
            )
            raise OSError(errno.ENOSPC, msg) from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system of ``folder`` has less than ``margin`` bytes (1 MiB) free."""
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


class GuardedExportMixin:
    """Put before ``AnomalibModule`` in the bases: checks anomalib's export methods and cleans up after them.

    Under ``INT8_PTQ`` it also overrides anomalib's ``ExportMixin._post_training_quantization_ov`` with anomalib's
    own steps (calibration on the datamodule's validation images, the batch size of a static model, the 300-image
    warning) plus NNCF's ignored scope of :meth:`ignored_scope`: anomalib's ``to_openvino`` has no way to pass NNCF
    options (an ``nncf_kwargs`` argument would make this override unnecessary).
    """

    MIN_CALIBRATION_IMAGES = 300  # anomalib's recommendation for INT8 calibration

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Anomalib's ``to_torch``, refused for an untrained model."""
        check_exportable(self)
        with staged_export(export_root, ExportType.TORCH) as staging:
            path = super().to_torch(staging, model_file_name)  # type: ignore[misc]
        return Path(export_root) / "weights" / ExportType.TORCH.value / Path(path).name

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,  # noqa: ANN401  # passed through to anomalib's to_onnx
    ) -> Path:
        """Anomalib's ``to_onnx``, refused for an untrained model."""
        check_exportable(self)
        with staged_export(export_root, ExportType.ONNX) as staging:
            path = super().to_onnx(staging, model_file_name, input_size, **kwargs)  # type: ignore[misc]
        return Path(export_root) / "weights" / ExportType.ONNX.value / Path(path).name

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        datamodule: "AnomalibDataModule | None" = None,
        metric: "Metric | None" = None,
        task: "TaskType | None" = None,
        max_drop: float = 0.01,
        ov_kwargs: dict[str, Any] | None = None,
        onnx_kwargs: dict[str, Any] | None = None,
    ) -> Path:
        """Anomalib's ``to_openvino``; INT8 quantisation without calibration data is refused before any work."""
        check_exportable(self)
        calibrated = compression_type is not None and CompressionType(compression_type) in CALIBRATED_COMPRESSION
        if calibrated and datamodule is None:
            msg = (
                f"{CompressionType(compression_type).value} quantisation needs calibration images: pass the "
                "training datamodule (`--data ...` on the command line, `datamodule=` to Engine.export)."
            )
            raise ValueError(msg)
        with staged_export(export_root, ExportType.OPENVINO) as staging:
            path = super().to_openvino(  # type: ignore[misc]
                staging,
                model_file_name,
                input_size,
                compression_type=compression_type,
                datamodule=datamodule,
                metric=metric,
                task=task,
                max_drop=max_drop,
                ov_kwargs=ov_kwargs,
                onnx_kwargs=onnx_kwargs,
            )
        return Path(export_root) / "weights" / ExportType.OPENVINO.value / Path(path).name

    @staticmethod
    def ignored_scope(model: "ov.Model") -> list[str]:
        """Under INT8 post-training quantisation, the anomaly-map tail and the networks' stems stay in FP32.

        See the module docstring and :func:`input_convolutions`.
        """
        return anomaly_map_tail(model) + input_convolutions(model)

    @classmethod
    def _post_training_quantization_ov(
        cls,
        model: "ov.Model",
        datamodule: "AnomalibDataModule | None" = None,
    ) -> "ov.Model":
        import nncf

        if datamodule is None:
            msg = "INT8_PTQ compression needs a datamodule with calibration images (`datamodule=` to Engine.export)."
            raise ValueError(msg)
        datamodule.setup("fit")
        if model.input(0).partial_shape[0].is_static:
            datamodule.train_batch_size = model.input(0).shape[0]
        dataloader = datamodule.val_dataloader()
        if len(dataloader.dataset) < cls.MIN_CALIBRATION_IMAGES:
            logger.warning(
                "INT8 calibration: %d images, more than %d recommended",
                len(dataloader.dataset),
                cls.MIN_CALIBRATION_IMAGES,
            )
        calibration = nncf.Dataset(dataloader, lambda batch: batch["image"])
        ignored = nncf.IgnoredScope(names=cls.ignored_scope(model), validate=False)
        return nncf.quantize(model, calibration, ignored_scope=ignored)
