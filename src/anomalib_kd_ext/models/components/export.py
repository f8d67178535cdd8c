# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Checks around anomalib's export: refuse what cannot give a usable model, leave nothing half-written.

anomalib's ``to_torch``/``to_onnx``/``to_openvino`` export an untrained model without a word (its
threshold and normalisation statistics are NaN, so every exported score is NaN), and a failed export
leaves an empty or partial ``weights/<format>`` folder behind. :class:`GuardedExportMixin` wraps the
three methods: it checks first, calls anomalib's own code, and removes what a failed call created.

It also keeps the anomaly-map tail of the graph in FP32 under INT8 post-training quantisation. anomalib's
``INT8_PTQ`` hands the whole graph to NNCF, which calibrates every quantiser on normal images; the cosine distances,
the Gaussian blur and the normalisation that follow the features then clip the large values that anomalous images
produce, and every exported score collapses (DSKD on MVTec bottle: image AUROC 0.5). Only the networks are
quantised here; everything downstream of the first feature normalisation runs in FP32.
"""

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from anomalib.deploy import CompressionType, ExportType
from anomalib.post_processing import PostProcessor

if TYPE_CHECKING:
    import openvino as ov
    from anomalib.data import AnomalibDataModule

logger = logging.getLogger(__name__)

# anomalib's recommendation for INT8 calibration (``ExportMixin._post_training_quantization_ov``).
MIN_CALIBRATION_IMAGES = 300

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
        for name in ("_image_threshold", "image_min", "image_max")
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
    """Names of the OpenVINO operations downstream of the feature normalisation (``ReduceL2``) of ``model``.

    In a cosine-distance KD model this is the anomaly map and its post-processing: the per-layer distances,
    interpolation, sum, blur, normalisation, thresholds and outputs. Empty when the graph has no ``ReduceL2``.
    """
    pending = [op for op in model.get_ordered_ops() if op.get_type_name() == "ReduceL2"]
    tail: dict[str, None] = {}
    while pending:
        op = pending.pop()
        name = op.get_friendly_name()
        if name in tail:
            continue
        tail[name] = None
        for output in op.outputs():
            pending.extend(target.get_node() for target in output.get_target_inputs())
    return [name for name in tail if name]


@contextmanager
def removed_on_failure(export_root: Path | str, export_type: ExportType) -> Iterator[None]:
    """Remove the files and folders a failed export created under ``export_root/weights/<format>``."""
    weights = Path(export_root) / "weights"
    target = weights / export_type.value
    created = [folder for folder in (Path(export_root), weights, target) if not folder.exists()]
    existing = set(target.rglob("*")) if target.exists() else set()
    try:
        yield
    except BaseException:
        if target.exists():
            for path in sorted(set(target.rglob("*")) - existing, reverse=True):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


class GuardedExportMixin:
    """Put before ``AnomalibModule`` in the bases: checks anomalib's export methods and cleans up after them."""

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Anomalib's ``to_torch``, refused for an untrained model."""
        check_exportable(self)
        with removed_on_failure(export_root, ExportType.TORCH):
            return super().to_torch(export_root, model_file_name)  # type: ignore[misc]

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,  # noqa: ANN401  # passed through to anomalib's to_onnx
    ) -> Path:
        """Anomalib's ``to_onnx``, refused for an untrained model."""
        check_exportable(self)
        with removed_on_failure(export_root, ExportType.ONNX):
            return super().to_onnx(export_root, model_file_name, input_size, **kwargs)  # type: ignore[misc]

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        datamodule: "AnomalibDataModule | None" = None,
        **kwargs: Any,  # noqa: ANN401  # passed through to anomalib's to_openvino
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
        with removed_on_failure(export_root, ExportType.OPENVINO):
            return super().to_openvino(  # type: ignore[misc]
                export_root,
                model_file_name,
                input_size,
                compression_type=compression_type,
                datamodule=datamodule,
                **kwargs,
            )

    @staticmethod
    def _post_training_quantization_ov(model: "ov.Model", datamodule: "AnomalibDataModule | None" = None) -> "ov.Model":
        """Anomalib's INT8 PTQ (calibration on the datamodule's validation images), anomaly-map tail kept in FP32.

        Raises:
            ValueError: If ``datamodule`` is ``None``.
        """
        import nncf

        if datamodule is None:
            msg = "INT8_PTQ compression needs a datamodule with calibration images (`datamodule=` to Engine.export)."
            raise ValueError(msg)
        datamodule.setup("fit")
        if model.input(0).partial_shape[0].is_static:
            datamodule.train_batch_size = model.input(0).shape[0]
        dataloader = datamodule.val_dataloader()
        if len(dataloader.dataset) < MIN_CALIBRATION_IMAGES:
            logger.warning(
                "INT8 calibration: %d images, more than %d recommended",
                len(dataloader.dataset),
                MIN_CALIBRATION_IMAGES,
            )
        calibration = nncf.Dataset(dataloader, lambda batch: batch["image"])
        ignored = nncf.IgnoredScope(names=anomaly_map_tail(model), validate=False)
        return nncf.quantize(model, calibration, ignored_scope=ignored)
