# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The runtime layer: what it adds to the models, and that the models' own code works without it."""

import logging
from pathlib import Path

import pytest
from anomalib.data import MVTecAD
from anomalib.engine import Engine

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.runtime import PluginRuntime, check_dataset_available
from anomalib_kd_ext.upstream import drop_runtime
from helpers import RESNET18


class DownloadStarted(Exception):  # noqa: N818  # a sentinel, not an error
    """Raised where anomalib's datamodule would start its download."""


class NoDownloadMVTecAD(MVTecAD):
    """MVTecAD whose download is replaced by a sentinel (tests never touch the network)."""

    def prepare_data(self) -> None:
        """Raise :class:`DownloadStarted` instead of downloading a missing dataset."""
        if not (Path(self.root) / str(self.category)).is_dir():
            raise DownloadStarted


@pytest.mark.parametrize("model_class", [AAND, DSKD])
def test_missing_dataset_root_is_named_before_the_download(
    model_class: type,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A missing root is named, with the fix, before anomalib's download starts; nothing is probed."""
    model = model_class(**RESNET18, pre_processor=model_class.configure_pre_processor(image_size=(64, 64)))
    datamodule = NoDownloadMVTecAD(root=tmp_path / "no_dataset", category="tiny", num_workers=0)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False)
    with caplog.at_level(logging.WARNING, logger="anomalib_kd_ext"), pytest.raises(DownloadStarted):
        engine.fit(model=model, datamodule=datamodule)
    (record,) = [r for r in caplog.records if "data not found" in r.getMessage()]
    assert f"'{tmp_path / 'no_dataset' / 'tiny'}'" in record.getMessage()
    assert "--data.root" in record.getMessage()


def test_dataset_on_disk_and_datamodules_without_root_pass_quietly(
    tiny_dataset: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dataset found on disk and a datamodule without a root pass the check without warnings."""
    with caplog.at_level(logging.WARNING, logger="anomalib_kd_ext"):
        assert check_dataset_available(MVTecAD(root=tiny_dataset, category="tiny"))
        assert check_dataset_available(object())
    assert not caplog.records


def test_models_carry_the_runtime_layer_and_the_upstream_code_drops_it() -> None:
    """The plugin's classes put PluginRuntime first; the generated upstream source has neither it nor its import."""
    for model_class in (AAND, DSKD):
        assert model_class.__mro__[1] is PluginRuntime
    folder = Path(__import__("anomalib_kd_ext").__file__).parent / "models"
    for name in ("aand", "dskd"):
        source = (folder / name / "lightning_model.py").read_text()
        assert "PluginRuntime" in source
        assert "PluginRuntime" not in drop_runtime(source)
        assert "anomalib_kd_ext.runtime" not in drop_runtime(source)
