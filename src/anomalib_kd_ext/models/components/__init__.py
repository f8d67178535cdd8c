# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Knowledge-distillation building blocks shared by AAND and DSKD."""

from .anomaly_map import CosineAnomalyMap, anomaly_score, cosine_distance
from .checkpoint_io import AtomicCheckpointIO, AtomicCheckpoints, CheckpointWriteError
from .data_checks import (
    DatasetProblemsError,
    check_dataset_available,
    check_image_files,
    check_mask_folders,
    check_test_set,
    check_trainer_dataset,
)
from .distributed import find_unused_parameters_in_ddp
from .evaluator import kd_evaluator
from .export import GuardedExportMixin, anomaly_map_tail, check_exportable, staged_export
from .optim import adam_betas
from .resume import ResumableRandomStateMixin, attached_trainer, capture_random_state, restore_random_state
from .reverse_student import (
    GeneratedBottleneck,
    GeneratedDecoder,
    ReverseStudent,
    build_reverse_student,
    check_input_size,
    required_input_multiple,
)
from .teacher import (
    LITE0_PACKAGE_WEIGHTS,
    Teacher,
    architecture_name,
    match_state_dict,
    prune_unused_blocks,
    read_state_dict,
    resolve_weights_path,
)
from .validation import check_choice, check_fractions, check_range

__all__ = [
    "AtomicCheckpointIO",
    "AtomicCheckpoints",
    "CheckpointWriteError",
    "LITE0_PACKAGE_WEIGHTS",
    "CosineAnomalyMap",
    "GeneratedBottleneck",
    "GeneratedDecoder",
    "GuardedExportMixin",
    "ResumableRandomStateMixin",
    "ReverseStudent",
    "Teacher",
    "adam_betas",
    "anomaly_map_tail",
    "anomaly_score",
    "architecture_name",
    "attached_trainer",
    "build_reverse_student",
    "capture_random_state",
    "check_choice",
    "check_dataset_available",
    "check_exportable",
    "check_fractions",
    "DatasetProblemsError",
    "check_image_files",
    "check_mask_folders",
    "check_input_size",
    "check_range",
    "check_test_set",
    "check_trainer_dataset",
    "cosine_distance",
    "find_unused_parameters_in_ddp",
    "kd_evaluator",
    "match_state_dict",
    "prune_unused_blocks",
    "read_state_dict",
    "staged_export",
    "required_input_multiple",
    "resolve_weights_path",
    "restore_random_state",
]
