# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Knowledge-distillation building blocks shared by AAND and DSKD."""

from .anomaly_map import CosineAnomalyMap, anomaly_score, cosine_distance
from .reverse_student import (
    GeneratedBottleneck,
    GeneratedDecoder,
    ReverseStudent,
    build_reverse_student,
    required_input_multiple,
)
from .teacher import Teacher, architecture_name, match_state_dict, read_state_dict

__all__ = [
    "CosineAnomalyMap",
    "GeneratedBottleneck",
    "GeneratedDecoder",
    "ReverseStudent",
    "Teacher",
    "anomaly_score",
    "architecture_name",
    "build_reverse_student",
    "cosine_distance",
    "match_state_dict",
    "read_state_dict",
    "required_input_multiple",
]
