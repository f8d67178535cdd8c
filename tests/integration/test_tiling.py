# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""anomalib's in-model tiling (``TilerConfigurationCallback`` → ``model.model.tiler``) with both models.

And the export of a tiled model.
"""

from pathlib import Path

import pytest
import torch
from anomalib.callbacks import TilerConfigurationCallback
from anomalib.data import MVTecAD
from anomalib.data.utils.tiler import Tiler

from anomalib_kd_ext.models import AAND, DSKD
from helpers import assert_metrics_match_predictions, fit_on_cpu, tiny_datamodule, tiny_model


def _fit_tiled(name: str, dataset: Path, root: Path) -> tuple[AAND | DSKD, MVTecAD, object]:
    """Train on 128 px inputs cut into four 64 px tiles by anomalib's tiler callback; model, datamodule, engine."""
    torch.manual_seed(0)
    model = tiny_model(name, 128)
    datamodule = tiny_datamodule(dataset)
    tiling = TilerConfigurationCallback(enable=True, tile_size=64, stride=64)
    engine = fit_on_cpu(model, datamodule, root, callbacks=[tiling])
    return model, datamodule, engine


@pytest.mark.parametrize("name", ["AAND", "DSKD"])
def test_single_tile_equals_no_tiling(name: str) -> None:
    """A tile as large as the image changes nothing: the tiling path is exact."""
    torch.manual_seed(0)
    model = tiny_model(name, 64).model.eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        model.tiler = Tiler(tile_size=64, stride=64)
        actual = model(images)
    torch.testing.assert_close(actual.anomaly_map, expected.anomaly_map)
    torch.testing.assert_close(actual.pred_score, expected.pred_score)


@pytest.mark.parametrize("name", ["AAND", "DSKD"])
def test_train_and_test_with_tiles(name: str, tiny_dataset: Path, tmp_path: Path) -> None:
    """128 px inputs cut into four 64 px tiles: both stages train on tiles, maps come back at 128 px."""
    model, datamodule, engine = _fit_tiled(name, tiny_dataset, tmp_path)
    assert isinstance(model.model.tiler, Tiler)
    metrics = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    assert_metrics_match_predictions(engine, model, datamodule, metrics)  # the tiled maps are what was scored
    with torch.no_grad():
        output = model.eval()(torch.rand(1, 3, 128, 128))
    assert output.anomaly_map.shape[-2:] == (128, 128)
    assert torch.isfinite(output.anomaly_map).all()


@pytest.mark.slow  # several minutes per model on 2 CPU cores (export of the unrolled tiles); run with -m slow
@pytest.mark.parametrize("name", ["DSKD", "AAND"])
def test_tiled_model_exports_to_openvino(name: str, tiny_dataset: Path, tmp_path: Path) -> None:
    """Tiling is part of the exported graph: OpenVINO gives the tiled torch model's maps and scores."""
    import openvino as ov
    from anomalib.deploy import ExportType

    model, _, engine = _fit_tiled(name, tiny_dataset, tmp_path)
    path = engine.export(model.eval(), ExportType.OPENVINO, export_root=tmp_path / "export", input_size=(128, 128))
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        expected = model(images)
    result = compiled(images.numpy())
    actual = {output.get_any_name(): torch.from_numpy(result[output]) for output in compiled.outputs}
    assert actual["anomaly_map"].shape[-2:] == (128, 128)
    torch.testing.assert_close(actual["anomaly_map"], expected.anomaly_map, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(actual["pred_score"], expected.pred_score, rtol=1e-4, atol=1e-4)
