# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Knowledge-distillation building blocks shared by AAND and DSKD."""

from .anomaly_map import EPS, CosineAnomalyMap, anomaly_score, cosine_distance
from .evaluator import kd_evaluator
from .export import GuardedExportMixin, anomaly_map_tail, check_exportable, input_convolutions, staged_export
from .module import DistillationModuleMixin
from .optim import adam_betas
from .reverse_student import (
    GeneratedBottleneck,
    GeneratedDecoder,
    ReverseStudent,
    build_reverse_student,
    check_input_size,
    required_input_multiple,
)
from .teacher import (
    Teacher,
    architecture_name,
    match_state_dict,
    prune_unused_blocks,
    read_state_dict,
    resolve_weights_path,
    save_timm_local_dir,
)
from .validation import check_choice, check_fractions, check_range

__all__ = [
    "EPS",
    "CosineAnomalyMap",
    "DistillationModuleMixin",
    "GuardedExportMixin",
    "GeneratedBottleneck",
    "GeneratedDecoder",
    "ReverseStudent",
    "Teacher",
    "adam_betas",
    "anomaly_map_tail",
    "anomaly_score",
    "architecture_name",
    "build_reverse_student",
    "check_choice",
    "check_exportable",
    "check_fractions",
    "check_input_size",
    "check_range",
    "cosine_distance",
    "input_convolutions",
    "kd_evaluator",
    "match_state_dict",
    "prune_unused_blocks",
    "read_state_dict",
    "required_input_multiple",
    "resolve_weights_path",
    "save_timm_local_dir",
    "staged_export",
]
