# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Shared test helpers: tiny generated datasets (MVTec AD layout, a few small PNG images), CPU fits, backbones."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_kd_ext.teachers import lite0_arguments

# The backbones the tests build models with. ResNet-18 without weights: fast, offline, enough for behaviour tests.
# RESNET18 also backs the `resnet18` fixture (conftest.py), and the upstream generator copies it into its conftest.
RESNET18 = {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"], "pre_trained": False}
LITE0 = lite0_arguments()
# The DSKD case of a test on the module's ``trained`` fixture (AAND and DSKD) whose code path both models share: it
# runs with ``-m slow`` only.
SECOND_MODEL_SLOW = pytest.mark.parametrize(
    "trained",
    ["AAND", pytest.param("DSKD", marks=pytest.mark.slow)],
    indirect=True,
)
# Where the integration tests' fits run: the CPU (CI), or e.g. ``KD_TEST_ACCELERATOR=gpu`` on a machine with one.
TEST_ACCELERATOR = os.environ.get("KD_TEST_ACCELERATOR", "cpu")


def _object_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright textured disc on a dark noisy background, RGB uint8."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.35 * size) ** 2
    image = rng.normal(40, 8, (size, size, 3))
    stripes = 160 + 30 * np.sin(xx / 3.0)[..., None]
    image[disc] = (stripes + rng.normal(0, 8, (size, size, 3)))[disc]
    return np.clip(image, 0, 255).astype(np.uint8)


def make_mvtec_like(
    root: Path,
    category: str = "tiny",
    n_train: int = 8,
    n_good: int = 3,
    n_defect: int = 3,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``root/category/{train/good, test/good, test/defect, ground_truth/defect}`` and return ``root``."""
    rng = np.random.default_rng(seed)
    base = Path(root) / category
    for folder in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(_object_image(rng, size)).save(base / "train/good" / f"{i:03d}.png")
    for i in range(n_good):
        Image.fromarray(_object_image(rng, size)).save(base / "test/good" / f"{i:03d}.png")
    for i in range(n_defect):
        image = _object_image(rng, size)
        mask = np.zeros((size, size), dtype=np.uint8)
        y, x = rng.integers(size // 3, size // 2, 2)
        side = size // 6
        image[y : y + side, x : x + side] = rng.integers(0, 255, 3)
        mask[y : y + side, x : x + side] = 255
        Image.fromarray(image).save(base / "test/defect" / f"{i:03d}.png")
        Image.fromarray(mask).save(base / "ground_truth/defect" / f"{i:03d}_mask.png")
    return Path(root)


def tiny_model(name: str, image_size: int = 64, **kwargs: object) -> object:
    """AAND or DSKD on an untrained ResNet-18 (``RESNET18``) with a pre-processor of ``image_size`` px.

    AAND trains one epoch per stage unless ``kwargs`` (the model's other arguments) say otherwise.
    """
    from anomalib_kd_ext.models import AAND, DSKD

    model_class = {"AAND": AAND, "DSKD": DSKD}[name]
    if model_class is AAND:
        kwargs = {"amplification_epochs": 1, "distillation_epochs": 1, **kwargs}
    pre_processor = model_class.configure_pre_processor(image_size=(image_size, image_size))
    return model_class(**RESNET18, pre_processor=pre_processor, **kwargs)


def tiny_datamodule(root: Path, category: str = "tiny", batch_size: int = 4, **kwargs: object) -> object:
    """Anomalib's ``MVTecAD`` on a generated dataset (``make_mvtec_like``), in the test process (no workers)."""
    from anomalib.data import MVTecAD

    return MVTecAD(
        root=root,
        category=category,
        train_batch_size=batch_size,
        eval_batch_size=kwargs.pop("eval_batch_size", batch_size),
        num_workers=0,
        **kwargs,
    )


def fit_on_cpu(
    model: object,
    datamodule: object,
    root: Path,
    default_epochs: int = 1,
    ckpt_path: Path | None = None,
    **engine_kwargs: object,
) -> object:
    """Fit ``model`` with anomalib's Engine on one device, no logger, no progress bar; return the engine.

    The device is the CPU unless ``KD_TEST_ACCELERATOR`` names another (``gpu``, ``auto``): the same tests then
    train on a GPU.

    The number of epochs is the model's own (``trainer_arguments["max_epochs"]``, AAND's two stages) or
    ``default_epochs``. ``ckpt_path`` resumes from a checkpoint. ``engine_kwargs`` go to the Engine (callbacks,
    deterministic, ...).
    """
    from anomalib.engine import Engine

    engine = Engine(
        default_root_dir=root,
        accelerator=TEST_ACCELERATOR,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        max_epochs=model.trainer_arguments.get("max_epochs", default_epochs),
        **engine_kwargs,
    )
    engine.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    return engine


def run_offline(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``command`` in ``cwd`` with the hub offline and ``env`` added; output captured, no exception on failure."""
    return subprocess.run(  # noqa: S603  # commands built by the tests themselves
        command,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


# Runs ``module:function`` once per argument list in one interpreter, each run's exit status and output kept apart.
_RUN_MAINS = """
import contextlib, importlib, io, json, sys

module, function = sys.argv[1].split(":")
main = getattr(importlib.import_module(module), function)
results = []
for args in json.loads(sys.argv[2]):
    sys.argv = [module, *args]
    out, err, status = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    results.append({"status": status, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def run_mains(entry: str, argument_lists: list[list[str]], cwd: Path) -> list[dict]:
    """Call the command-line function ``entry`` (``module:function``) with each argument list in one fresh interpreter.

    One start-up (anomalib, torch, Lightning: seconds each) for many command lines whose own work is small (``--help``,
    ``--print_config``). Returns, per argument list, its exit status, stdout and stderr.
    """
    import json

    result = run_offline([sys.executable, "-c", _RUN_MAINS, entry, json.dumps(argument_lists)], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", probe]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0  # noqa: S603


needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs in a user namespace here")


def on_small_disk(
    mount_point: Path,
    size: str,
    command: list[str],
    read_only: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``command`` with a fresh tmpfs of ``size`` mounted at ``mount_point`` (optionally remounted read-only)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o size={size} tmpfs "{mount_point}" && mkdir "{mount_point}/run"'
    if read_only:
        script += f' && mount -o remount,ro "{mount_point}"'
    script += ' && exec "$@"'
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    full = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *command]
    return subprocess.run(full, capture_output=True, text=True, env=env, timeout=600, check=False)  # noqa: S603


def assert_metrics_match_predictions(engine: object, model: object, datamodule: object, metrics: dict) -> None:
    """The reported image (and, where given, pixel) AUROC equal those of the model's own test-set predictions.

    ``engine.predict`` on the test split gives the post-processed scores and maps the evaluator saw; scikit-learn's
    AUROC of those against the labels and masks must be the reported number, so a metric computed on the wrong
    outputs, labels or split fails, whatever its value.
    """
    import torch
    from sklearn.metrics import roc_auc_score

    batches = engine.predict(model=model, dataloaders=datamodule.test_dataloader())
    labels = torch.cat([batch.gt_label for batch in batches]).flatten()
    scores = torch.cat([batch.pred_score for batch in batches]).flatten()
    assert labels.unique().numel() == 2, "the test split needs good and defective images"
    assert metrics["image_AUROC"] == pytest.approx(roc_auc_score(labels.numpy(), scores.float().numpy()), abs=1e-4)
    if "pixel_AUROC" in metrics:
        masks = torch.cat([batch.gt_mask for batch in batches]).flatten()
        maps = torch.cat([batch.anomaly_map for batch in batches]).flatten()
        expected = roc_auc_score(masks.int().numpy(), maps.float().numpy())
        assert metrics["pixel_AUROC"] == pytest.approx(expected, abs=1e-4)
