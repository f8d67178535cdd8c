# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Both models end to end through the stock `anomalib` command: train, test from the checkpoint, export, parity."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_kd_ext.models import AAND, DSKD
from helpers import SECOND_MODEL_SLOW, run_offline

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
# OpenVINO FP32 against torch eager on the same images, after anomalib's post-processing (values in [0, 1]).
MAP_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4


def run_anomalib(*args: str, cwd: Path) -> str:
    """Run the `anomalib` command offline; fail with its output if it fails."""
    result = run_offline([ANOMALIB, *args], cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


MODELS = {"AAND": AAND, "DSKD": DSKD}
# Two epochs each: AAND's two stages, DSKD's two students.
EPOCH_ARGS = {
    "AAND": ["--model.amplification_epochs", "1", "--model.distillation_epochs", "1"],
    "DSKD": ["--trainer.max_epochs", "2"],
}


@pytest.fixture(scope="module", params=list(MODELS))
def trained(
    request: pytest.FixtureRequest,
    tiny_dataset: Path,
    lite0_weights: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """Train the model (real EfficientNet-Lite0 teacher from a local file) with `anomalib train`."""
    name = request.param
    work = tmp_path_factory.mktemp(f"{name.lower()}_cli")
    model_args = [
        "--model",
        name,
        "--model.backbone",
        "tf_efficientnet_lite0",
        "--model.layers",
        "[blocks.1, blocks.2, blocks.4]",
        "--model.backbone_weights",
        lite0_weights,
    ]
    data_args = [
        "--data",
        "MVTecAD",
        "--data.root",
        str(tiny_dataset),
        "--data.category",
        "tiny",
        "--data.train_batch_size",
        "4",
        "--data.eval_batch_size",
        "4",
        "--data.num_workers",
        "0",
    ]
    output = run_anomalib(
        "train",
        *model_args,
        *EPOCH_ARGS[name],
        *data_args,
        "--default_root_dir",
        str(work),
        "--seed_everything",
        "42",
        cwd=work,
    )
    checkpoints = sorted(work.rglob("*.ckpt"))
    assert checkpoints, output[-3000:]
    return {
        "name": name,
        "work": work,
        "ckpt": checkpoints[0],
        "model_args": model_args,
        "data_args": data_args,
        "output": output,
    }


@SECOND_MODEL_SLOW  # DSKD by the stock command with -m slow; by the Engine in test_model_contract.py
def test_train_reports_metrics(trained: dict) -> None:
    """`anomalib train` runs 2 epochs, reports test metrics; the checkpoint holds the last epoch (AAND: stage 2)."""
    assert "max_epochs=2" in trained["output"]
    for metric in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert metric in trained["output"]
    checkpoint = torch.load(trained["ckpt"], weights_only=False)
    assert checkpoint["epoch"] == 1
    if trained["name"] == "AAND":
        assert checkpoint["aand_stage"] == "distillation"


# Warnings a stock `anomalib train --model Stfpm` prints as well (checked on anomalib 2.7 / Lightning 2.6 / timm 1.0):
# raised while anomalib and Lightning import timm and torch, not by this plugin. Anything else fails the test below.
UPSTREAM_WARNINGS = (
    ("timm/models/layers/__init__.py", "FutureWarning: Importing from timm.models.layers is deprecated"),
    ("anomalib/models/image/dinomaly/components/layers.py", "FutureWarning: The anomalib.models.components.dinov2"),
    ("lightning/pytorch/utilities/_pytree.py", "`isinstance(treespec, LeafSpec)` is deprecated"),
)
WARNING_LINE = re.compile(r"^(?P<path>\S+\.py):\d+: (?P<message>.*)$", flags=re.MULTILINE)


@SECOND_MODEL_SLOW  # DSKD by the stock command with -m slow; by the Engine in test_model_contract.py
def test_train_is_quiet(trained: dict) -> None:
    """A stock `anomalib train` of the model prints no warning of its own or of its configuration."""
    output = trained["output"]
    warnings = [(match["path"], match["message"]) for match in WARNING_LINE.finditer(output)]
    ours = [
        (path, message)
        for path, message in warnings
        if not any(path.endswith(source) and message.startswith(text) for source, text in UPSTREAM_WARNINGS)
    ]
    assert not ours, ours
    # Lightning's log noise of earlier versions of the models: modules left in eval mode (the frozen teacher),
    # self.log without a logger, a batch size guessed from an ambiguous collection, a summary without FLOPs.
    for noise in ("in eval mode at the start of training", "no logger configured", "ambiguous", "Total FLOPs: 0"):
        assert noise not in output, noise
    assert re.search(r"Modules in eval mode: 0\b", output)
    assert re.search(r"Total FLOPs: [1-9]", output)


@SECOND_MODEL_SLOW  # DSKD by the stock command with -m slow; by the Engine in test_model_contract.py
def test_test_from_checkpoint(trained: dict) -> None:
    """`anomalib test --ckpt_path` on the trained checkpoint reports the metrics `anomalib train` reported."""
    output = run_anomalib(
        "test",
        *trained["model_args"],
        *trained["data_args"],
        "--ckpt_path",
        str(trained["ckpt"]),
        "--default_root_dir",
        str(trained["work"] / "test"),
        cwd=trained["work"],
    )
    # The checkpoint holds the weights, threshold and normalisation `train` tested with: the same numbers.
    for metric in ("image_AUROC", "pixel_AUROC"):
        assert printed_metric(output, metric) == printed_metric(trained["output"], metric), metric


def printed_metric(output: str, name: str) -> float:
    """The value of ``name`` in the metrics table anomalib prints after testing."""
    match = re.search(rf"{name}\W+([0-9]+\.[0-9]+)", output)
    assert match is not None, f"{name} not printed:\n{output[-3000:]}"
    return float(match.group(1))


# One more epoch than the trained run: AAND's distillation stage, or DSKD's trainer.
MORE_EPOCHS = {
    "AAND": ["--model.amplification_epochs", "1", "--model.distillation_epochs", "2"],
    "DSKD": ["--trainer.max_epochs", "3"],
}


@SECOND_MODEL_SLOW  # DSKD by the stock command with -m slow; by the Engine in test_model_contract.py
def test_fit_resumes_from_checkpoint(trained: dict) -> None:
    """`anomalib fit --ckpt_path` continues a run: optimiser states, stage and epoch come from the checkpoint."""
    work = trained["work"] / "resume"
    output = run_anomalib(
        "fit",
        *trained["model_args"],
        *MORE_EPOCHS[trained["name"]],
        *trained["data_args"],
        "--ckpt_path",
        str(trained["ckpt"]),
        "--default_root_dir",
        str(work),
        "--seed_everything",
        "42",
        cwd=trained["work"],
    )
    assert "Restoring states from the checkpoint path" in output
    assert "max_epochs=3" in output
    (checkpoint_path,) = work.rglob("model.ckpt")
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["epoch"] == 2
    assert checkpoint["global_step"] > torch.load(trained["ckpt"], weights_only=True)["global_step"]
    if trained["name"] == "AAND":
        assert checkpoint["aand_stage"] == "distillation"
        assert len(checkpoint["optimizer_states"]) == 2


@pytest.fixture(scope="module")
def exported(trained: dict) -> Path:
    """Export the trained model with `anomalib export --export_type openvino`; return model.xml."""
    export_root = trained["work"] / "export"
    run_anomalib(
        "export",
        *trained["model_args"],
        "--export_type",
        "openvino",
        "--ckpt_path",
        str(trained["ckpt"]),
        "--default_root_dir",
        str(export_root),
        "--onnx_kwargs",
        '{"opset_version": 18}',
        cwd=trained["work"],
    )
    return next(export_root.rglob("model.xml"))


# DSKD's OpenVINO export is checked against torch in test_export.py (ResNet-18) and exported with Lite0 in
# test_model_contract.py; here anomalib's export command, the same for both models.
@SECOND_MODEL_SLOW
def test_openvino_export_matches_torch(trained: dict, exported: Path, tiny_dataset: Path) -> None:
    """The OpenVINO export gives the checkpoint's maps and scores, and its decisions away from the threshold."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(exported), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    # load_from_checkpoint reads with weights_only=True, as anomalib 2.7 does.
    model = MODELS[trained["name"]].load_from_checkpoint(trained["ckpt"]).eval()
    paths = sorted((tiny_dataset / "tiny" / "test").rglob("*.png"))
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths])
    images = images.float() / 255
    with torch.no_grad():
        expected = model(images)
    result = compiled(images.numpy())
    outputs = {o.get_any_name(): result[o] for o in compiled.outputs}
    assert np.abs(outputs["anomaly_map"] - expected.anomaly_map.numpy()).max() <= MAP_TOLERANCE
    assert np.abs(outputs["pred_score"] - expected.pred_score.numpy()).max() <= SCORE_TOLERANCE
    # Decisions agree wherever the score is not within the tolerance of the threshold (0.5 after normalisation):
    # the adaptive threshold is one of the validation scores, so on tiny data one image can sit exactly on it.
    clear = np.abs(expected.pred_score.numpy() - 0.5) > SCORE_TOLERANCE
    assert clear.sum() >= len(paths) - 1
    assert np.array_equal(outputs["pred_label"][clear], expected.pred_label.numpy()[clear])


@SECOND_MODEL_SLOW  # the folder scorer reads every export the same way
def test_deploy_command_scores_test_folder(trained: dict, exported: Path, tiny_dataset: Path) -> None:
    """`python -m anomalib_kd_ext.deploy` on the exported model gives the OpenVINO model's own scores."""
    import openvino as ov

    output = trained["work"] / "deploy"
    test_dir = tiny_dataset / "tiny" / "test"
    command = [sys.executable, "-m", "anomalib_kd_ext.deploy", str(exported), str(test_dir), "--output", str(output)]
    result = run_offline(command, trained["work"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((output / "scores.json").read_text())["images"]
    paths = sorted(test_dir.rglob("*.png"))
    assert [row["image"] for row in rows] == [p.relative_to(test_dir).as_posix() for p in paths]
    compiled = ov.Core().compile_model(str(exported), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for row, path in zip(rows, paths, strict=True):
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / 255
        expected = compiled(image)[compiled.output("pred_score")].item()
        assert row["pred_score"] == pytest.approx(expected, abs=1e-5)
        assert (output / "overlays" / path.relative_to(test_dir)).with_suffix(".png").is_file()


@SECOND_MODEL_SLOW  # anomalib's predict path is the same for both models
def test_anomalib_predict_reads_the_checkpoint_not_an_export(trained: dict, exported: Path, tiny_dataset: Path) -> None:
    """`anomalib predict` scores a folder from the Lightning checkpoint; an exported model.xml is refused.

    anomalib's `predict` restores a Lightning checkpoint (`torch.load`); exported models are read by anomalib's
    inferencers (`anomalib.deploy`) or the plugin's folder scorer, as docs/deployment.md says.
    """
    test_dir = tiny_dataset / "tiny" / "test" / "good"
    out = trained["work"] / "predict"
    run_anomalib(
        "predict",
        *trained["model_args"],
        "--ckpt_path",
        str(trained["ckpt"]),
        "--data",
        str(test_dir),
        "--default_root_dir",
        str(out),
        cwd=trained["work"],
    )
    written = sorted(path.name for path in out.rglob("images/**/*.png"))
    assert written == sorted(path.name for path in test_dir.glob("*.png"))
    with pytest.raises(AssertionError, match="Unsupported operand"):
        run_anomalib(
            "predict",
            *trained["model_args"],
            "--ckpt_path",
            str(exported),
            "--data",
            str(test_dir),
            "--default_root_dir",
            str(trained["work"] / "predict_xml"),
            cwd=trained["work"],
        )
