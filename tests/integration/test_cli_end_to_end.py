# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND end to end through the stock `anomalib` command: train, test from the checkpoint, export, parity."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_kd_ext.models import AAND

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
# OpenVINO FP32 against torch eager on the same images, after anomalib's post-processing (values in [0, 1]).
MAP_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4


def run_anomalib(*args: str, cwd: Path) -> str:
    """Run the `anomalib` command offline; fail with its output if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(  # noqa: S603
        [ANOMALIB, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, lite0_weights: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train AAND (1 + 1 epochs, real EfficientNet-Lite0 teacher from a local file) with `anomalib train`."""
    work = tmp_path_factory.mktemp("aand_cli")
    model_args = [
        "--model",
        "AAND",
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
        "--model.amplification_epochs",
        "1",
        "--model.distillation_epochs",
        "1",
        *data_args,
        "--default_root_dir",
        str(work),
        "--seed_everything",
        "42",
        cwd=work,
    )
    checkpoints = sorted(work.rglob("*.ckpt"))
    assert checkpoints, output[-3000:]
    return {"work": work, "ckpt": checkpoints[0], "model_args": model_args, "data_args": data_args, "output": output}


def test_train_runs_both_stages_and_reports_metrics(trained: dict) -> None:
    assert "max_epochs=2" in trained["output"]
    for metric in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert metric in trained["output"]
    checkpoint = torch.load(trained["ckpt"], weights_only=False)
    assert checkpoint["aand_stage"] == "distillation"


def test_test_from_checkpoint(trained: dict) -> None:
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
    assert "image_AUROC" in output


def test_openvino_export_matches_torch(trained: dict, tiny_dataset: Path) -> None:
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
    xml = next(export_root.rglob("model.xml"))

    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU")
    model = AAND.load_from_checkpoint(trained["ckpt"]).eval()  # weights_only=True, as anomalib 2.7 loads
    paths = sorted((tiny_dataset / "tiny" / "test").rglob("*.png"))
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths])
    images = images.float() / 255
    with torch.no_grad():
        expected = model(images)
    result = compiled(images.numpy())
    outputs = {o.get_any_name(): result[o] for o in compiled.outputs}
    assert np.abs(outputs["anomaly_map"] - expected.anomaly_map.numpy()).max() <= MAP_TOLERANCE
    assert np.abs(outputs["pred_score"] - expected.pred_score.numpy()).max() <= SCORE_TOLERANCE
    assert np.array_equal(outputs["pred_label"], expected.pred_label.numpy())
