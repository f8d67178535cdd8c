# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's runtime layer around the models: what an anomalib pull request of AAND / DSKD leaves out.

:class:`PluginRuntime` is put first in the bases of a model (``class AAND(PluginRuntime, ...)``); the upstream
generator (:mod:`anomalib_kd_ext.upstream`) drops it, and every model works without it. It adds:

- dataset checks: a missing dataset root is named before anomalib's download (``configure_callbacks``), masks and
  images that do not pair up after it (``prepare_data``), unreadable, truncated, 16-bit or mis-sized files before
  training (``on_fit_start``), a test set without anomalous images before testing (``on_test_start``);
- atomic checkpoints (:class:`~anomalib_kd_ext.runtime.checkpoint_io.AtomicCheckpoints`);
- resumable random streams in checkpoints (:class:`~anomalib_kd_ext.runtime.resume.ResumableRandomStateMixin`);
- guarded, staged exports, INT8 with the anomaly-map tail in FP32
  (:class:`~anomalib_kd_ext.runtime.export.GuardedExportMixin`);
- under DDP, ``find_unused_parameters=True`` for a model that trains its parameter groups in turn (a ``schedule``
  with more than one stage, as AAND's).
"""

from collections.abc import Sequence

from lightning.pytorch import Callback

from .checkpoint_io import AtomicCheckpoints
from .data_checks import check_image_files, check_mask_folders, check_test_set, check_trainer_dataset
from .distributed import find_unused_parameters_in_ddp
from .export import GuardedExportMixin
from .resume import ResumableRandomStateMixin, attached_trainer


class PluginRuntime(GuardedExportMixin, ResumableRandomStateMixin):
    """Checks, atomic checkpoints, resumable random streams, guarded exports and DDP settings for a model."""

    def setup(self, stage: str) -> None:
        """Under DDP, let the strategy skip the parameters of a stage that is not being trained."""
        super().setup(stage)  # type: ignore[misc]
        schedule = getattr(self, "schedule", None)
        if len(getattr(schedule, "stages", ())) > 1:
            find_unused_parameters_in_ddp(attached_trainer(self), type(self).__name__)  # type: ignore[arg-type]

    def prepare_data(self) -> None:
        """After the datamodule's own ``prepare_data`` (a download), check that its masks and images pair up."""
        super().prepare_data()  # type: ignore[misc]
        trainer = attached_trainer(self)  # type: ignore[arg-type]
        if trainer is not None:
            check_mask_folders(getattr(trainer, "datamodule", None), report_dir=trainer.default_root_dir)

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """The model's callbacks and atomic checkpoints; first, name a dataset root that is not on disk."""
        check_trainer_dataset(attached_trainer(self))  # type: ignore[arg-type]
        callbacks = super().configure_callbacks()  # type: ignore[misc]
        callbacks = list(callbacks) if isinstance(callbacks, Sequence) else [callbacks]
        return [*callbacks, AtomicCheckpoints()]

    def on_fit_start(self) -> None:
        """The model's own checks (input size, textures), then every image file, before any work is done."""
        super().on_fit_start()  # type: ignore[misc]
        trainer = attached_trainer(self)  # type: ignore[arg-type]
        if trainer is not None:
            check_image_files(getattr(trainer, "datamodule", None), report_dir=trainer.default_root_dir)

    def on_test_start(self) -> None:
        """Refuse a test set without anomalous images (its AUROC and F1 would be reported as 0.0)."""
        super().on_test_start()  # type: ignore[misc]
        check_test_set(attached_trainer(self))  # type: ignore[arg-type]
