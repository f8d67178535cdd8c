# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Export of both models through `Engine.export`: torch, ONNX, OpenVINO FP32/FP16/INT8, parity and bad input.

Small random-initialised ResNet18 models at 64 px, trained one epoch per stage on the generated dataset, so that
the post-processor holds real thresholds. Parity: torch eager vs ONNX Runtime vs OpenVINO on the test images at
two input resolutions (the exported graph resizes internally, so any input size is accepted).
"""

import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.deploy import CompressionType, ExportType
from anomalib.engine import Engine
from PIL import Image

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.models.components import anomaly_map_tail, input_convolutions
from helpers import SECOND_MODEL_SLOW, TEST_ACCELERATOR, needs_tmpfs, on_small_disk, tiny_datamodule, tiny_model

# FP32 export against torch eager, after post-processing (values in [0, 1]).
FP32_TOLERANCE = 1e-4
# FP16 weights: ~3 significant digits per layer.
FP16_TOLERANCE = 5e-2
RESOLUTIONS = ((64, 64), (96, 80))


def _engine(root: Path, max_epochs: int | None = None) -> Engine:
    kwargs = {"max_epochs": max_epochs} if max_epochs else {}
    return Engine(
        default_root_dir=root,
        accelerator=TEST_ACCELERATOR,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        **kwargs,
    )


@pytest.fixture(scope="module", params=["AAND", "DSKD"])
def trained(request: pytest.FixtureRequest, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The model (AAND or DSKD) fitted for 2 epochs on the tiny dataset, its engine and its work folder."""
    torch.manual_seed(0)
    work = tmp_path_factory.mktemp(f"export_{request.param.lower()}")
    model = tiny_model(request.param)
    engine = _engine(work, max_epochs=2)
    engine.fit(model=model, datamodule=tiny_datamodule(tiny_dataset))
    return {"model": model.eval(), "engine": engine, "work": work}


@pytest.fixture(scope="module")
def openvino_fp32(trained: dict) -> Path:
    """The trained model's FP32 OpenVINO export by ``Engine.export`` (model.xml), shared by the tests that read it."""
    return trained["engine"].export(trained["model"], ExportType.OPENVINO, export_root=trained["work"] / "fp32")


def _test_images(dataset: Path, size: tuple[int, int]) -> np.ndarray:
    paths = sorted((dataset / "tiny" / "test").rglob("*.png"))
    images = [np.asarray(Image.open(p).convert("RGB").resize(size[::-1], Image.BILINEAR)) for p in paths]
    return np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255


def _assert_close(actual: dict, expected: dict, tolerance: float) -> None:
    for key in ("anomaly_map", "pred_score"):
        difference = np.abs(np.asarray(actual[key], dtype=np.float32) - expected[key]).max()
        assert difference <= tolerance, f"{key}: max difference {difference:.2e} > {tolerance:.0e}"
    # Image decisions agree wherever the score is not within the tolerance of the threshold (0.5).
    clear = np.abs(expected["pred_score"] - 0.5) > tolerance
    assert np.array_equal(np.asarray(actual["pred_label"]).astype(bool)[clear], expected["pred_label"][clear])


def _torch_outputs(model: AAND | DSKD, images: np.ndarray) -> dict:
    with torch.no_grad():
        batch = model(torch.from_numpy(images))
    return {k: v.numpy() for k, v in batch._asdict().items() if v is not None}


def _openvino_outputs(path: Path, images: np.ndarray) -> dict:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(images)
    return {output.get_any_name(): result[output] for output in compiled.outputs}


def test_fp32_openvino_matches_torch(trained: dict, openvino_fp32: Path, tiny_dataset: Path) -> None:
    """The FP32 OpenVINO export gives torch's maps and scores at every tested input size."""
    for size in RESOLUTIONS:
        images = _test_images(tiny_dataset, size)
        expected = _torch_outputs(trained["model"], images)
        assert expected["anomaly_map"].shape[-2:] == (64, 64)
        _assert_close(_openvino_outputs(openvino_fp32, images), expected, FP32_TOLERANCE)


@SECOND_MODEL_SLOW  # anomalib's OpenVINO export reads the same ONNX graph, compared for both models above
def test_fp32_onnx_matches_torch(trained: dict, tiny_dataset: Path) -> None:
    """The FP32 ONNX export, run by ONNX Runtime, gives torch's maps and scores at every tested input size."""
    import onnxruntime as ort

    engine, model, work = trained["engine"], trained["model"], trained["work"]
    onnx_path = engine.export(model, ExportType.ONNX, export_root=work / "onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    for size in RESOLUTIONS:
        images = _test_images(tiny_dataset, size)
        outputs = dict(zip(names, session.run(None, {"input": images}), strict=True))
        _assert_close(outputs, _torch_outputs(model, images), FP32_TOLERANCE)


def test_torch_export_reloads(trained: dict, tiny_dataset: Path) -> None:
    """The torch export reloads and gives exactly the trained model's outputs."""
    path = trained["engine"].export(trained["model"], ExportType.TORCH, export_root=trained["work"] / "torch")
    reloaded = torch.load(path, weights_only=False)["model"].eval()
    images = _test_images(tiny_dataset, (64, 64))
    _assert_close(_torch_outputs(reloaded, images), _torch_outputs(trained["model"], images), 0.0)


@SECOND_MODEL_SLOW  # FP16 is anomalib's weight compression, the same for both models
def test_fp16_openvino_matches_torch(trained: dict, tiny_dataset: Path) -> None:
    """FP16 OpenVINO matches torch within the precision of 16-bit weights."""
    engine, model, work = trained["engine"], trained["model"], trained["work"]
    images = _test_images(tiny_dataset, (64, 64))
    fp16 = engine.export(model, ExportType.OPENVINO, export_root=work / "fp16", compression_type=CompressionType.FP16)
    _assert_close(_openvino_outputs(fp16, images), _torch_outputs(model, images), FP16_TOLERANCE)


def test_int8_openvino_quantises_the_networks_only(trained: dict, tiny_dataset: Path) -> None:
    """INT8 gives finite outputs of the same shape and holds 8-bit nodes in the networks, none in the map tail."""
    engine, model, work = trained["engine"], trained["model"], trained["work"]
    images = _test_images(tiny_dataset, (64, 64))
    expected = _torch_outputs(model, images)
    int8 = engine.export(
        model,
        ExportType.OPENVINO,
        export_root=work / "int8",
        compression_type=CompressionType.INT8_PTQ,
        datamodule=tiny_datamodule(tiny_dataset),
    )
    outputs = _openvino_outputs(int8, images)
    assert outputs["anomaly_map"].shape == expected["anomaly_map"].shape
    assert np.isfinite(outputs["anomaly_map"]).all()
    assert np.isfinite(outputs["pred_score"]).all()
    # The quantised graph really holds 8-bit weights (FakeQuantize/FakeConvert nodes or u8/i8 constants).
    import openvino as ov

    quantised = ov.Core().read_model(str(int8))
    ops = {op.get_type_name() for op in quantised.get_ops()}
    assert ops & {"FakeQuantize", "FakeConvert"}, sorted(ops)
    # ... in the networks only: the anomaly-map tail (distances, blur, normalisation) stays FP32, so that
    # calibration on normal images cannot clip the large values of anomalies.
    tail = set(anomaly_map_tail(quantised))
    assert {"anomaly_map", "pred_score"} <= tail
    quantisers = [op.get_friendly_name() for op in quantised.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert not tail.intersection(quantisers), sorted(tail.intersection(quantisers))
    # ... and the tail starts after the networks: a ReduceL2 inside them (AAND's RAA) leaves the student quantised.
    decoder = [op.get_friendly_name() for op in quantised.get_ops() if op.get_type_name() == "ConvolutionBackpropData"]
    assert decoder, "the reverse student's transposed convolutions are missing from the graph"
    assert not tail.intersection(decoder), sorted(tail.intersection(decoder))
    # The networks' stems (first convolutions on the normalised image) stay FP32: one per network that reads it.
    stems = input_convolutions(quantised)
    assert len(stems) == (2 if isinstance(model, DSKD) else 1), stems
    inputs_of = {
        op.get_friendly_name(): {source.get_source_output().get_node().get_type_name() for source in op.inputs()}
        for op in quantised.get_ops()
    }
    assert all("FakeQuantize" not in inputs_of[stem] for stem in stems), {stem: inputs_of[stem] for stem in stems}
    # ... and the reverse student really runs in INT8: every transposed convolution reads a quantised input.
    assert all("FakeQuantize" in inputs_of[name] for name in decoder), {name: inputs_of[name] for name in decoder}


@SECOND_MODEL_SLOW  # the input size is anomalib's export argument, the same for both models
def test_static_input_size(trained: dict) -> None:
    """``input_size`` exports a model with that fixed height and width."""
    import openvino as ov

    path = trained["engine"].export(
        trained["model"],
        ExportType.OPENVINO,
        export_root=trained["work"] / "static",
        input_size=(96, 96),
    )
    shape = ov.Core().read_model(str(path)).inputs[0].get_partial_shape()
    assert shape[2].get_length() == 96
    assert shape[3].get_length() == 96


@pytest.mark.parametrize("name", ["AAND", "DSKD"])
def test_untrained_model_is_refused(name: str, tmp_path: Path) -> None:
    """Exporting an untrained model fails for every export type, naming ``--ckpt_path``; nothing is written."""
    model = tiny_model(name)
    for export_type in (ExportType.TORCH, ExportType.ONNX, ExportType.OPENVINO):
        with pytest.raises(RuntimeError, match=r"has not been trained.*--ckpt_path"):
            _engine(tmp_path).export(model, export_type, export_root=tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_int8_without_calibration_data_is_refused(trained: dict, tmp_path: Path) -> None:
    """INT8 export without a datamodule fails, asking for calibration images; nothing is written."""
    export_root = tmp_path / "int8"
    with pytest.raises(ValueError, match=r"calibration images.*--data"):
        trained["engine"].export(
            trained["model"],
            ExportType.OPENVINO,
            export_root=export_root,
            compression_type=CompressionType.INT8_PTQ,
        )
    assert not export_root.exists()


def test_failed_export_leaves_nothing(trained: dict, tmp_path: Path) -> None:
    """An export that fails midway (a bad ONNX argument) leaves no export folder."""
    export_root = tmp_path / "failed"
    with pytest.raises(TypeError):
        trained["engine"].export(
            trained["model"],
            ExportType.ONNX,
            export_root=export_root,
            onnx_kwargs={"no_such_argument": 1},
        )
    assert not export_root.exists()


@SECOND_MODEL_SLOW  # the inferencers are anomalib's, reading every export the same way
def test_anomalib_inferencers_match_the_folder_scorer(
    trained: dict,
    openvino_fp32: Path,
    tiny_dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anomalib's OpenVINOInferencer and TorchInferencer on our exports give the folder scorer's scores and maps."""
    from anomalib.deploy import OpenVINOInferencer, TorchInferencer

    # anomalib's TorchInferencer unpickles the exported model only with this opt-in.
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    from anomalib_kd_ext.deploy import OpenVINOScorer, read_image

    engine, model, work = trained["engine"], trained["model"], trained["work"]
    xml = openvino_fp32
    pt = engine.export(model, ExportType.TORCH, export_root=work / "inferencers")
    scorer = OpenVINOScorer(xml)
    openvino = OpenVINOInferencer(path=xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    torch_inferencer = TorchInferencer(path=pt, device="cpu")
    for path in sorted((tiny_dataset / "tiny" / "test").rglob("*.png")):
        expected = scorer(read_image(path))
        with torch.no_grad():  # TorchInferencer.predict itself keeps autograd on
            from_torch = torch_inferencer.predict(path)
        for name, prediction in (("openvino", openvino.predict(path)), ("torch", from_torch)):
            score = float(np.asarray(prediction.pred_score).reshape(-1)[0])
            anomaly_map = np.asarray(prediction.anomaly_map, dtype=np.float32).reshape(expected["anomaly_map"].shape)
            assert abs(score - expected["pred_score"]) <= FP32_TOLERANCE, (name, path.name)
            assert np.abs(anomaly_map - expected["anomaly_map"]).max() <= FP32_TOLERANCE, (name, path.name)


@SECOND_MODEL_SLOW  # the heuristic is anomalib's pre-processing, the same for every model
def test_openvino_inferencer_divides_images_above_one_by_255(openvino_fp32: Path, tiny_dataset: Path) -> None:
    """Pins anomalib's heuristic: a float image whose maximum is above 1.0 is divided by 255.

    So with e.g. 1.0000002 after a resize, the model scores a black image. Clipping to [0, 1] (or passing uint8 / a
    file) is the safe call.

    One model is enough: the heuristic is the inferencer's, before any model runs.
    """
    from anomalib.deploy import OpenVINOInferencer

    from anomalib_kd_ext.deploy import OpenVINOScorer

    xml = openvino_fp32
    inferencer = OpenVINOInferencer(path=xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    image = _test_images(tiny_dataset, (64, 64))[-1]  # an anomalous test image, CHW float in [0, 1]
    bumped = image.copy()
    bumped[0, 0, 0] = 1.0000002  # what a bilinear / antialiased resize can leave behind

    def anomaly_map(array: np.ndarray) -> np.ndarray:
        return np.asarray(inferencer.predict(array.copy()).anomaly_map, dtype=np.float32).reshape(64, 64)

    clipped = np.clip(bumped, 0.0, 1.0)
    reference = OpenVINOScorer(xml)(np.ascontiguousarray(clipped.transpose(1, 2, 0)))["anomaly_map"]
    assert np.abs(anomaly_map(clipped) - reference).max() <= FP32_TOLERANCE
    # above 1.0: the inferencer scores bumped / 255, a nearly black image, not the image itself
    np.testing.assert_allclose(anomaly_map(bumped), anomaly_map(bumped / 255.0), atol=FP32_TOLERANCE)
    assert np.abs(anomaly_map(bumped) - reference).max() > 10 * FP32_TOLERANCE


@SECOND_MODEL_SLOW  # the staged export is shared, and each run costs two exports
def test_full_disk_during_export_keeps_the_previous_export(
    trained: dict,
    openvino_fp32: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk that fills up while OpenVINO writes the model: the error surfaces, the previous export is untouched.

    One model is enough (the staged export is the models' shared mixin); the real-tmpfs variant below runs DSKD.
    """
    import openvino as ov

    engine, model = trained["engine"], trained["model"]
    root = tmp_path / "export"
    first = root / "weights" / "openvino" / "model.xml"
    shutil.copytree(openvino_fp32.parent, first.parent)  # an earlier export in place
    before = {path.name: path.read_bytes() for path in first.parent.iterdir()}

    def fills_up(ov_model: object, path: object, *args: object, **kwargs: object) -> None:
        del ov_model, args, kwargs
        Path(path).write_bytes(b"<?xml half")
        raise OSError(28, "No space left on device", str(path))

    def onnx_path(directory: Path, *args: object, **kwargs: object) -> Path:
        del args, kwargs
        return Path(directory) / "model.onnx"

    def converted(*args: object, **kwargs: object) -> object:
        del args, kwargs
        return ov.Core().read_model(str(openvino_fp32))

    # The graph export before the write is the shared FP32 one, read back (the full path runs in the tmpfs test).
    monkeypatch.setattr(model, "to_onnx", onnx_path)
    monkeypatch.setattr(ov, "convert_model", converted)
    monkeypatch.setattr(ov, "save_model", fills_up)
    with pytest.raises(OSError, match="No space left"):
        engine.export(model, ExportType.OPENVINO, export_root=root)
    assert {path.name: path.read_bytes() for path in first.parent.iterdir()} == before
    assert sorted(path.name for path in root.iterdir()) == ["weights"]


def test_read_only_export_root_is_a_clear_error(trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export root that cannot be written fails before any work, naming the folder and the fix."""
    import tempfile

    def read_only(*args: object, **kwargs: object) -> str:
        del args, kwargs
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(OSError, match=r"Cannot write the export to .*ro.*Read-only file system.*writable export root"):
        trained["engine"].export(trained["model"], ExportType.TORCH, export_root=tmp_path / "ro")
    assert not (tmp_path / "ro").exists()


@pytest.mark.slow  # an export in a fresh process on a real tmpfs (~25 s); the staged export's logic runs by default
@needs_tmpfs
def test_really_full_disk_during_export_keeps_the_previous_export(
    trained: dict,
    openvino_fp32: Path,
    tmp_path: Path,
) -> None:
    """A real tmpfs filled up to 1 MB between two OpenVINO exports: the error surfaces, the first export is intact.

    One model is enough (the export path is the models' shared mixin); the first export is a copy of the shared one.
    """
    if type(trained["model"]) is not DSKD:
        pytest.skip("run for DSKD only: the staged export is shared, and an export in a fresh process costs ~25 s")
    checkpoint = tmp_path / "model.ckpt"
    trained["engine"].trainer.save_checkpoint(checkpoint)
    disk = tmp_path / "disk"
    script = textwrap.dedent(f"""
        import hashlib, os, pathlib, shutil
        from anomalib.deploy import ExportType
        from anomalib.engine import Engine
        from anomalib_kd_ext.models import {type(trained["model"]).__name__} as Model
        root = pathlib.Path("{disk}/run/export")
        model = Model.load_from_checkpoint("{checkpoint}").eval()
        engine = Engine(default_root_dir="{disk}/run", accelerator="cpu", logger=False)
        first = root / "weights" / "openvino" / "model.xml"
        shutil.copytree("{openvino_fp32.parent}", first.parent)  # an earlier export in place
        def snapshot():
            return {{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in first.parent.iterdir()}}
        before = snapshot()
        stat = os.statvfs(root)
        left = stat.f_bavail * stat.f_frsize - 1_000_000
        with (pathlib.Path("{disk}") / "filler").open("wb") as filler:
            while left > 0:
                left -= filler.write(b"0" * min(left, 1 << 24))
        try:
            engine.export(model, ExportType.OPENVINO, export_root=root)
        except OSError as error:
            print("ERROR", error.errno, str(error).split(":")[0])
        print("SAME", snapshot() == before, sorted(before))
        print("LEFT", sorted(p.name for p in root.iterdir()))
    """)
    result = on_small_disk(disk, "400m", [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-3:] == [
        f"ERROR 28 [Errno 28] Could not write the export to '{disk}/run/export'",
        "SAME True ['model.bin', 'model.xml']",
        "LEFT ['weights']",
    ]
