# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's runtime layer: dataset checks, atomic checkpoints, resume, DDP settings.

None of it is part of the models themselves (``anomalib_kd_ext.models.aand`` / ``.dskd`` and their components,
what an anomalib pull request contains): :class:`PluginRuntime`, a Lightning callback that the wheel gives every
``Trainer`` through Lightning's ``callbacks_factory`` entry point, adds it while one of the plugin's models runs.
"""

from .callback import PluginRuntime, is_plugin_model
from .checkpoint_io import AtomicCheckpointIO, AtomicCheckpoints, CheckpointWriteError
from .data_checks import (
    DatasetProblemsError,
    check_dataset_available,
    check_image_files,
    check_mask_folders,
    check_test_set,
    show_uncaught_briefly,
)
from .resume import capture_random_state, load_random_state, restore_random_state, save_random_state

__all__ = [
    "AtomicCheckpointIO",
    "AtomicCheckpoints",
    "CheckpointWriteError",
    "DatasetProblemsError",
    "PluginRuntime",
    "capture_random_state",
    "check_dataset_available",
    "check_image_files",
    "check_mask_folders",
    "check_test_set",
    "is_plugin_model",
    "load_random_state",
    "restore_random_state",
    "save_random_state",
    "show_uncaught_briefly",
]
