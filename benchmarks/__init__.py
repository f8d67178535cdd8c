# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The project's benchmarks; one entry point, run from the repository root: ``python -m benchmarks <task> ...``.

``python -m benchmarks --help`` lists the tasks; ``python -m benchmarks <task> --help`` their options. Results go
to ``benchmarks/results/`` (CSV, JSON, Markdown, PNG), with the hardware read at run time.
"""
