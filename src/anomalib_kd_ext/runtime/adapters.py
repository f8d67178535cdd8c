# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's only uses of private APIs of anomalib and Lightning, one named adapter per case.

Each adapter says why no public way exists and what upstream change would remove it. Nothing else in the plugin
touches a private attribute of another library (``tests/unit/runtime/test_adapters.py`` checks the source).
"""

from typing import Any

from lightning.pytorch.strategies import DDPStrategy


def ddp_kwargs(strategy: DDPStrategy) -> dict[str, Any]:
    """The keyword arguments that Lightning's DDP strategy will hand to ``DistributedDataParallel`` (mutable).

    Lightning keeps them in ``DDPStrategy._ddp_kwargs`` until it wraps the model and has no public getter or setter;
    a public ``DDPStrategy.ddp_kwargs`` (to be proposed to Lightning) would remove this adapter.
    """
    return strategy._ddp_kwargs  # noqa: SLF001


class QuantizeNetworksOnlyAdapter:
    """Put before ``AnomalibModule`` in the bases: anomalib's ``INT8_PTQ`` with a hook for NNCF's ignored scope.

    anomalib's ``ExportMixin._compress_ov_model`` calls its private static ``_post_training_quantization_ov`` and
    gives no way to pass NNCF options; this overrides that one method with anomalib's own steps (calibration on the
    datamodule's validation images, the batch size of a static model, the 300-image warning) plus
    ``ignored_scope(model)``. An ``nncf_kwargs`` argument of anomalib's ``to_openvino`` (to be proposed upstream; see
    docs/upstreaming.md) would remove this adapter.
    """

    MIN_CALIBRATION_IMAGES = 300  # anomalib's recommendation for INT8 calibration

    @staticmethod
    def ignored_scope(model: Any) -> list[str]:  # noqa: ANN401  # an openvino.Model
        """Names of the operations NNCF must leave in FP32; override. Defaults to none."""
        del model
        return []

    @classmethod
    def _post_training_quantization_ov(cls, model: Any, datamodule: Any = None) -> Any:  # noqa: ANN401
        import logging

        import nncf

        if datamodule is None:
            msg = "INT8_PTQ compression needs a datamodule with calibration images (`datamodule=` to Engine.export)."
            raise ValueError(msg)
        datamodule.setup("fit")
        if model.input(0).partial_shape[0].is_static:
            datamodule.train_batch_size = model.input(0).shape[0]
        dataloader = datamodule.val_dataloader()
        if len(dataloader.dataset) < cls.MIN_CALIBRATION_IMAGES:
            logging.getLogger(__name__).warning(
                "INT8 calibration: %d images, more than %d recommended",
                len(dataloader.dataset),
                cls.MIN_CALIBRATION_IMAGES,
            )
        calibration = nncf.Dataset(dataloader, lambda batch: batch["image"])
        ignored = nncf.IgnoredScope(names=cls.ignored_scope(model), validate=False)
        return nncf.quantize(model, calibration, ignored_scope=ignored)
