# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Every notebook under notebooks/ runs top to bottom (tiny budgets: KD_NOTEBOOK_SMOKE=1), so none can rot."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.usefixtures("lite0_weights")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat", reason="install the `test` extra")
    nbclient = pytest.importorskip("nbclient", reason="install the `test` extra")
    pytest.importorskip("elpv_dataset", reason="install the `elpv` extra")
    monkeypatch.setenv("KD_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("KD_NOTEBOOK_WORK", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit notebooks without outputs"
    )
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the failing cell and traceback, on any error
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors


def test_notebooks_exist() -> None:
    assert len(NOTEBOOKS) >= 2
