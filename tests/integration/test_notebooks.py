# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Every notebook under notebooks/ runs top to bottom (tiny budgets: KD_NOTEBOOK_SMOKE=1), so none can rot."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
# What each notebook must show once run (text of its outputs, and MIME types of displayed data).
EXPECTED_OUTPUTS = {
    "01_train_and_heat_maps": ["image/png", "/images/", ".png'"],  # the heat-map figure, the written overlays
    "02_export_openvino": ["'torch eager'", "OpenVINO ", "image,width,height,pred_score"],  # timings, scores.csv
}


def _output_text(cells: list) -> str:
    """Every output of the code cells as text: streams, results, and the MIME types of displayed data."""
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            data = output.get("data", {})
            parts.extend([*data, data.get("text/plain", "")])
    return "\n".join(parts)


# Notebooks that train on real data for minutes run with ``-m slow`` (CI runs both sets).
SLOW_NOTEBOOKS = {"02_export_openvino"}  # DSKD on ELPV, three OpenVINO exports (FP32, FP16, INT8): ~90 s


@pytest.mark.usefixtures("lite0_weights")
@pytest.mark.parametrize(
    "path",
    [pytest.param(path, marks=pytest.mark.slow) if path.stem in SLOW_NOTEBOOKS else path for path in NOTEBOOKS],
    ids=[path.stem for path in NOTEBOOKS],
)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook, committed without outputs, runs without errors and shows its expected outputs."""
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
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the failing cell and traceback, on any error
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    shown = _output_text(notebook.cells)
    missing = [text for text in EXPECTED_OUTPUTS[path.stem] if text not in shown]
    assert not missing, f"{path.name} ran but did not show {missing}"


def test_every_notebook_has_expected_outputs() -> None:
    """A new notebook needs its line in EXPECTED_OUTPUTS (what it must show), so that running is not all it proves."""
    assert sorted(EXPECTED_OUTPUTS) == [path.stem for path in NOTEBOOKS]
