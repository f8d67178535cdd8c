# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Models compared on one dataset: ``python -m anomalib_kd_ext.compare <folder>`` (see ``__main__``).

The same core runs the research grids of the repository (``python -m benchmarks grid``): :mod:`.spec` names the
models, datasets, settings and result columns (no heavy imports), :mod:`.cells` trains, tests and scores one model
in one process, :mod:`.runner` runs the cells one child process each with progress and resume, :mod:`.report`
writes the CSV, the ranked table and the heat-map picture.
"""
