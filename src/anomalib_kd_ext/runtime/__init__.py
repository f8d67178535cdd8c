# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's runtime layer: dataset checks, atomic checkpoints, resume, guarded exports, DDP settings.

None of it is part of the models themselves (``anomalib_kd_ext.models.aand`` / ``.dskd`` and their components,
what an anomalib pull request contains); :class:`PluginRuntime` adds it to them.
"""

from .checkpoint_io import AtomicCheckpointIO, AtomicCheckpoints, CheckpointWriteError
from .data_checks import (
    DatasetProblemsError,
    check_dataset_available,
    check_image_files,
    check_mask_folders,
    check_test_set,
    show_uncaught_briefly,
)
from .export import GuardedExportMixin, anomaly_map_tail, check_exportable, input_convolutions, staged_export
from .module import PluginRuntime
from .resume import attached_trainer, capture_random_state, restore_random_state

__all__ = [
    "AtomicCheckpointIO",
    "AtomicCheckpoints",
    "CheckpointWriteError",
    "DatasetProblemsError",
    "GuardedExportMixin",
    "PluginRuntime",
    "anomaly_map_tail",
    "attached_trainer",
    "capture_random_state",
    "check_dataset_available",
    "check_exportable",
    "check_image_files",
    "check_mask_folders",
    "check_test_set",
    "input_convolutions",
    "restore_random_state",
    "show_uncaught_briefly",
    "staged_export",
]
