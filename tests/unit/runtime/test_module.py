# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The runtime layer: what it adds to the models, and that the models' own code works without it."""

import logging
from pathlib import Path

import pytest
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import LightningModule, Trainer

from anomalib_kd_ext.models import AAND, DSKD
from anomalib_kd_ext.runtime import AtomicCheckpointIO, PluginRuntime, check_dataset_available, is_plugin_model
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
def test_missing_dataset_root_is_named_when_the_download_fails(
    model_class: type,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A missing root is named, with the fix, when anomalib's download fails (offline); nothing is probed."""
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


def test_every_trainer_gets_the_runtime_through_the_entry_point() -> None:
    """The installed wheel's ``callbacks_factory`` entry point gives a plain ``Trainer`` one PluginRuntime."""
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    assert [type(callback) for callback in trainer.callbacks].count(PluginRuntime) == 1


def _runtime(trainer: Trainer) -> PluginRuntime:
    """The trainer's own (first) PluginRuntime, the one that acts."""
    return next(callback for callback in trainer.callbacks if isinstance(callback, PluginRuntime))


def test_runtime_acts_on_the_plugin_models_only(tmp_path: Path) -> None:
    """Atomic checkpoints for AAND and DSKD; any other module keeps its trainer's checkpoint IO."""
    plugin_models = [model_class(**RESNET18) for model_class in (AAND, DSKD)]
    for model in [*plugin_models, LightningModule()]:
        trainer = Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
        before = type(trainer.strategy.checkpoint_io)
        _runtime(trainer).setup(trainer, model, "fit")
        expected = AtomicCheckpointIO if model in plugin_models else before
        assert type(trainer.strategy.checkpoint_io) is expected, type(model).__name__
        assert is_plugin_model(model) == (model in plugin_models)


def test_a_second_runtime_does_nothing(tmp_path: Path) -> None:
    """One passed by hand next to the entry point's: only the first acts (checks and all-gathers run once)."""
    extra = PluginRuntime()
    trainer = Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, callbacks=[extra])
    model = AAND(**RESNET18)
    runtimes = [callback for callback in trainer.callbacks if isinstance(callback, PluginRuntime)]
    assert len(runtimes) == 2
    assert [runtime.acts_on(trainer, model) for runtime in runtimes] == [True, False]


def test_ddp_lets_aand_skip_the_stage_it_does_not_train(tmp_path: Path) -> None:
    """Under DDP the runtime sets find_unused_parameters for AAND (two stages), and leaves DSKD's DDP as it is."""
    from lightning.pytorch.strategies import DDPStrategy

    from anomalib_kd_ext.runtime.adapters import ddp_kwargs

    for model_class, expected in ((AAND, True), (DSKD, None)):
        trainer = Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu", strategy=DDPStrategy())
        _runtime(trainer).setup(trainer, model_class(**RESNET18), "fit")
        assert ddp_kwargs(trainer.strategy).get("find_unused_parameters") is expected, model_class.__name__


def test_switched_off_plugin_adds_no_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ANOMALIB_KD_EXT_AUTOLOAD=0`` switches the runtime callback off with the registration hook."""
    from anomalib_kd_ext import _autoload

    assert [type(callback) for callback in _autoload.lightning_callbacks()] == [PluginRuntime]
    monkeypatch.setenv("ANOMALIB_KD_EXT_AUTOLOAD", "0")
    assert _autoload.lightning_callbacks() == []


def test_models_have_no_plugin_base_class() -> None:
    """The models' classes are what goes upstream: every base comes from their own folders, anomalib or Lightning."""
    for model_class in (AAND, DSKD):
        plugin_bases = [
            base.__module__
            for base in model_class.__mro__
            if base.__module__.startswith("anomalib_kd_ext")
            and not base.__module__.startswith("anomalib_kd_ext.models")
        ]
        assert not plugin_bases, plugin_bases
