# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Checks around anomalib's export: refuse what cannot give a usable model, leave nothing half-written.

anomalib's ``to_torch``/``to_onnx``/``to_openvino`` export an untrained model without a word (its
threshold and normalisation statistics are NaN, so every exported score is NaN), and a failed export
leaves an empty or partial ``weights/<format>`` folder behind. :class:`GuardedExportMixin` wraps the
three methods: it checks first, calls anomalib's own code, and removes what a failed call created.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from anomalib.deploy import CompressionType, ExportType
from anomalib.post_processing import PostProcessor

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
        """anomalib's ``to_torch``, refused for an untrained model."""
        check_exportable(self)
        with removed_on_failure(export_root, ExportType.TORCH):
            return super().to_torch(export_root, model_file_name)  # type: ignore[misc]

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> Path:
        """anomalib's ``to_onnx``, refused for an untrained model."""
        check_exportable(self)
        with removed_on_failure(export_root, ExportType.ONNX):
            return super().to_onnx(export_root, model_file_name, input_size, **kwargs)  # type: ignore[misc]

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        datamodule: Any = None,
        **kwargs: Any,
    ) -> Path:
        """anomalib's ``to_openvino``; INT8 quantisation without calibration data is refused before any work."""
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
