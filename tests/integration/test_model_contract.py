# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""anomalib's model contract for AAND and DSKD, as anomalib's own ``tests/integration/model/test_models.py`` runs it.

The models are found through ``list_models()`` and built with ``get_model`` and their default arguments, except the
offline teacher (EfficientNet-Lite0 from the ``lite0`` extra) and, for AAND, one epoch per stage: anomalib's Engine
lets a model's ``trainer_arguments`` override its own ``max_epochs``, so the defaults would train 100 + 120 epochs.
``fit`` writes a checkpoint on an MVTec AD-layout dummy dataset (category ``dummy``, batch 2, no logger); ``test``,
``train``, ``validate``, ``predict`` and ``export`` for every ``ExportType`` start from that checkpoint.
"""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType
from anomalib.engine import Engine
from anomalib.models import get_model, list_models
from anomalib.utils.path import convert_to_snake_case

from anomalib_kd_ext.teachers import LITE0_LAYERS
from helpers import TEST_ACCELERATOR, assert_metrics_match_predictions, make_mvtec_like

PLUGIN_MODELS = ("AAND", "DSKD")
EXTRA_ARGS = {"AAND": {"amplification_epochs": 1, "distillation_epochs": 1}, "DSKD": {}}


def test_list_models_holds_exactly_the_plugin_models() -> None:
    """Both models are listed in every case, and the plugin registers no other model."""
    plugin = {name for name in list_models(case="pascal") if get_model_module(name).startswith("anomalib_kd_ext")}
    assert plugin == set(PLUGIN_MODELS)
    assert {convert_to_snake_case(name) for name in PLUGIN_MODELS} <= list_models(case="snake")
    assert {"Aand", "Dskd"} <= list_models(case="title")


def get_model_module(pascal_name: str) -> str:
    """Module of the ``AnomalibModule`` subclass called ``pascal_name``."""
    from anomalib.models import AnomalibModule

    return next(cls.__module__ for cls in AnomalibModule.__subclasses__() if cls.__name__ == pascal_name)


@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_default_arguments_offline_give_the_weights_error(name: str) -> None:
    """With the paper teacher from the hub and no network, construction fails with the fix in the message."""
    with pytest.raises(RuntimeError, match="backbone_weights"):
        get_model(convert_to_snake_case(name))


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MVTec AD-layout dummy dataset (category ``dummy``)."""
    return make_mvtec_like(tmp_path_factory.mktemp("contract_data"), category="dummy", n_train=6)


def _objects(name: str, dataset_path: Path, project_path: Path, lite0_weights: str) -> tuple:
    assert name in list_models(case="pascal"), f"{name} missing from anomalib's list_models()"
    model = get_model(
        convert_to_snake_case(name),
        backbone="tf_efficientnet_lite0",
        layers=list(LITE0_LAYERS),
        backbone_weights=lite0_weights,
        **EXTRA_ARGS[name],
    )
    datamodule = MVTecAD(root=dataset_path, category="dummy", train_batch_size=2, eval_batch_size=2, num_workers=0)
    engine = Engine(logger=False, default_root_dir=project_path, max_epochs=1, devices=1, accelerator=TEST_ACCELERATOR)
    return model, datamodule, engine


@pytest.fixture(scope="module", params=PLUGIN_MODELS)
def fitted(
    request: pytest.FixtureRequest,
    dataset_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    lite0_weights: str,
) -> dict:
    """``Engine.fit`` of one model; its checkpoint and the factory for fresh objects."""
    torch.manual_seed(0)
    project = tmp_path_factory.mktemp(f"contract_{request.param.lower()}")
    model, datamodule, engine = _objects(request.param, dataset_path, project, lite0_weights)
    engine.fit(model=model, datamodule=datamodule)
    checkpoint = Path(engine.trainer.checkpoint_callback.best_model_path)
    assert checkpoint.is_file()
    assert engine.trainer.current_epoch == model.trainer_arguments.get("max_epochs", 1)

    def fresh() -> tuple:
        return _objects(request.param, dataset_path, project, lite0_weights)

    return {"name": request.param, "checkpoint": checkpoint, "fresh": fresh, "project": project}


def test_validate_from_checkpoint(fitted: dict) -> None:
    """``validate`` from the checkpoint runs once and leaves finite thresholds (no validation metrics, as anomalib)."""
    model, datamodule, engine = fitted["fresh"]()
    results = engine.validate(model=model, datamodule=datamodule, ckpt_path=fitted["checkpoint"])
    assert len(results) == 1
    assert torch.isfinite(torch.as_tensor(model.post_processor.image_threshold))


@pytest.mark.parametrize("entry_point", ["test", "train"])
def test_entry_point_from_checkpoint(fitted: dict, entry_point: str) -> None:
    """``test`` and ``train`` (fit, already at ``max_epochs``, then test) from the checkpoint report metrics."""
    model, datamodule, engine = fitted["fresh"]()
    results = getattr(engine, entry_point)(model=model, datamodule=datamodule, ckpt_path=fitted["checkpoint"])
    if entry_point == "train":
        results = [engine.trainer.callback_metrics]
    assert {"image_AUROC", "pixel_AUROC"} <= set(results[0])
    metrics = {key: float(results[0][key]) for key in ("image_AUROC", "pixel_AUROC")}
    assert_metrics_match_predictions(engine, model, datamodule, metrics)


def _checkpoint_threshold(checkpoint: Path) -> torch.Tensor:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return state["post_processor._image_threshold"]


def test_predict_from_checkpoint(fitted: dict, dataset_path: Path) -> None:
    """``predict`` from the checkpoint: a score and a map of the input size per test image, labels by its threshold."""
    model, datamodule, engine = fitted["fresh"]()
    assert torch.isnan(model.post_processor._image_threshold)  # noqa: SLF001  # a fresh model has no threshold
    predictions = engine.predict(model=model, datamodule=datamodule, ckpt_path=fitted["checkpoint"])
    stored = _checkpoint_threshold(fitted["checkpoint"])
    assert torch.isfinite(stored)
    assert torch.equal(model.post_processor._image_threshold.cpu(), stored)  # noqa: SLF001  # the checkpoint's
    n_test = len(list((dataset_path / "dummy" / "test").rglob("*.png")))
    assert sum(len(batch.pred_score) for batch in predictions) == n_test
    for batch in predictions:
        assert batch.anomaly_map.shape[-2:] == batch.image.shape[-2:]
        assert torch.isfinite(batch.pred_score).all()
        # Normalised scores put the checkpoint's threshold at 0.5: the labels are that threshold's.
        assert torch.equal(batch.pred_label.flatten().bool(), batch.pred_score.flatten() > 0.5)


# The graph exports from the checkpoint at the default 256 px (~30 s each) run with ``-m slow``. By default the OpenVINO
# export from a checkpoint is test_cli_end_to_end.py's `anomalib export --ckpt_path` (AAND), compared with torch there;
# both models' OpenVINO graphs are compared with torch in test_export.py.
EXPORT_CASES = [
    ("AAND", ExportType.TORCH),
    ("DSKD", ExportType.TORCH),
    pytest.param("AAND", ExportType.OPENVINO, marks=pytest.mark.slow),
    pytest.param("DSKD", ExportType.OPENVINO, marks=pytest.mark.slow),
    pytest.param("AAND", ExportType.ONNX, marks=pytest.mark.slow),
    pytest.param("DSKD", ExportType.ONNX, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("fitted", "export_type"), EXPORT_CASES, indirect=["fitted"])
def test_export_from_checkpoint(fitted: dict, export_type: ExportType, tmp_path: Path) -> None:
    """``export`` from the checkpoint writes every ``ExportType``; reloaded, it gives the checkpoint's outputs."""
    model, _, engine = fitted["fresh"]()
    path = engine.export(model=model, export_type=export_type, export_root=tmp_path, ckpt_path=fitted["checkpoint"])
    assert path is not None
    assert Path(path).is_file()
    assert (
        Path(path).suffix
        == {ExportType.TORCH: ".pt", ExportType.ONNX: ".onnx", ExportType.OPENVINO: ".xml"}[export_type]
    )
    reference = type(model).load_from_checkpoint(fitted["checkpoint"], map_location="cpu").eval()
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(images)
    if export_type == ExportType.TORCH:
        exported = torch.load(path, map_location="cpu", weights_only=False)["model"].eval()
        with torch.no_grad():
            scores = exported(images).pred_score
    elif export_type == ExportType.OPENVINO:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled(images.numpy())
        scores = torch.as_tensor(result[next(o for o in compiled.outputs if o.get_any_name() == "pred_score")])
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        outputs = session.run(None, {session.get_inputs()[0].name: images.numpy()})
        scores = torch.as_tensor(outputs[names.index("pred_score")])
    torch.testing.assert_close(scores.flatten().float(), expected.pred_score.flatten().float(), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_config_class_path_is_anomalib_only(name: str) -> None:
    """Pins what blocks ``anomalib benchmark`` for the installed plugin (docs/upstreaming.md).

    anomalib's ``get_model`` finds a name through ``list_models`` but a ``{"class_path": ...}`` config only as an
    attribute of ``anomalib.models`` (or of its whitelisted submodules), which a plugin cannot add without patching
    anomalib. When this test fails, anomalib resolves plugin models from configs and the benchmark configs in
    ``configs/benchmark`` run with the plugin alone.
    """
    from anomalib.models import UnknownModelError

    for class_path in (name, f"anomalib_kd_ext.models.{name}"):
        with pytest.raises(UnknownModelError):
            get_model({"class_path": class_path, "init_args": {"backbone": "resnet18", "pre_trained": False}})
    assert type(get_model(name.lower(), backbone="resnet18", pre_trained=False)).__name__ == name
