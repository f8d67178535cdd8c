# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""The plugin's runtime around AAND and DSKD, as a Lightning callback: what an anomalib pull request leaves out.

The models (``anomalib_kd_ext.models``, what goes upstream) know nothing of it. The wheel registers
:func:`anomalib_kd_ext._autoload.lightning_callbacks` in Lightning's ``lightning.pytorch.callbacks_factory``
entry-point group, so every ``Trainer`` (anomalib's ``Engine`` and the stock ``anomalib`` command included) gets
one :class:`PluginRuntime`; it acts only while the trainer runs one of the plugin's models and leaves every other
model alone. It adds:

- dataset checks: masks and images that do not pair up (``setup``, after anomalib's download; when anomalib's own
  ``setup`` fails on them first, ``on_exception`` names them), unreadable, truncated, 16-bit or mis-sized files
  before training (``on_fit_start``), a test set without anomalous images before testing (``on_test_start``), and a
  dataset root that is not on disk when anomalib's download fails (``on_exception``);
- atomic checkpoints (:class:`~anomalib_kd_ext.runtime.checkpoint_io.AtomicCheckpoints`);
- resumable random streams in checkpoints (:mod:`anomalib_kd_ext.runtime.resume`);
- under DDP, ``find_unused_parameters=True`` for a model that trains its parameter groups in turn (a ``schedule``
  with more than one stage, as AAND's).

Without the entry point (a source tree that is not installed), pass it yourself:
``Engine(callbacks=[PluginRuntime()])``.
"""

import sys
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from .checkpoint_io import AtomicCheckpoints
from .data_checks import (
    DatasetProblemsError,
    check_dataset_available,
    check_image_files,
    check_mask_folders,
    check_test_set,
    show_uncaught_briefly,
)
from .distributed import find_unused_parameters_in_ddp
from .resume import load_random_state, save_random_state


def is_plugin_model(pl_module: LightningModule | None) -> bool:
    """Whether ``pl_module`` is one of the plugin's models (AAND, DSKD or a subclass); imports nothing.

    A plugin model exists only once ``anomalib_kd_ext.models`` is imported, so a plugin that fails to import can never
    break the run of another model here.
    """
    models = sys.modules.get("anomalib_kd_ext.models")
    return models is not None and isinstance(pl_module, models.AAND | models.DSKD)


class PluginRuntime(Callback):
    """Dataset checks, atomic checkpoints, resumable random streams and DDP settings for AAND and DSKD.

    Only the first ``PluginRuntime`` of a trainer acts (a second one, passed by hand next to the entry point's, does
    nothing), and only while one of the plugin's models runs.
    """

    def __init__(self) -> None:
        self._checkpoints = AtomicCheckpoints()
        self._data_set_up = False  # between this run's setup and teardown: its data was set up

    @property
    @override
    def state_key(self) -> str:
        return "PluginRuntime"  # no state of its own; a stable key all the same

    def acts_on(self, trainer: Trainer, pl_module: LightningModule | None) -> bool:
        """Whether this callback acts: a plugin model runs, and this is the trainer's first ``PluginRuntime``."""
        if not is_plugin_model(pl_module):
            return False
        return next((cb for cb in trainer.callbacks if isinstance(cb, PluginRuntime)), self) is self  # type: ignore[attr-defined]

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """After the datamodule is set up, before the strategy wraps the model: masks, checkpoint IO, DDP."""
        if not self.acts_on(trainer, pl_module):
            return
        schedule = getattr(pl_module, "schedule", None)
        if len(getattr(schedule, "stages", ())) > 1:
            find_unused_parameters_in_ddp(trainer, type(pl_module).__name__)
        check_mask_folders(getattr(trainer, "datamodule", None), report_dir=_report_dir(trainer))
        self._checkpoints.setup(trainer, pl_module, stage)
        self._data_set_up = True

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """The next run (``test`` after ``fit``) sets its data up anew."""
        del trainer, pl_module, stage  # not used
        self._data_set_up = False

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Every image file, before any work is done (the model's own checks follow)."""
        if self.acts_on(trainer, pl_module):
            check_image_files(getattr(trainer, "datamodule", None), report_dir=_report_dir(trainer))

    @override
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuse a test set without anomalous images (its AUROC and F1 would be reported as 0.0)."""
        if self.acts_on(trainer, pl_module):
            check_test_set(trainer)

    @override
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Add every rank's random generator states to the checkpoint."""
        if self.acts_on(trainer, pl_module):
            save_random_state(trainer, pl_module, checkpoint)

    @override
    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Give this rank its random generator states back when a fit resumes from the checkpoint."""
        if self.acts_on(trainer, pl_module):
            load_random_state(trainer, pl_module, checkpoint)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Print the plugin's check errors briefly; name a missing dataset root or unpaired masks of a failed setup.

        An uncaught dataset or checkpoint error (``show_briefly``) is printed as its message alone
        (:func:`~anomalib_kd_ext.runtime.data_checks.show_uncaught_briefly`).

        Acts only on errors before the data was set up (a failed download, anomalib's own ``setup``); later errors
        (training, checkpoints, testing) pass untouched, and so does anything the checks themselves cannot read.

        Raises:
            DatasetProblemsError: If the datamodule's masks and anomalous images do not pair up: anomalib's ``setup``
                then fails with a bare length error, which becomes the cause of this one.
        """
        if not self.acts_on(trainer, pl_module):
            return
        if getattr(exception, "show_briefly", False):  # a dataset or checkpoint error: its message alone, uncaught
            show_uncaught_briefly()
            return
        datamodule = getattr(trainer, "datamodule", None)
        if self._data_set_up or datamodule is None or isinstance(exception, KeyboardInterrupt):
            return
        if not check_dataset_available(datamodule):
            return  # the download of a missing dataset failed: named, nothing to pair
        try:
            check_mask_folders(datamodule, report_dir=_report_dir(trainer))
        except DatasetProblemsError as problems:
            show_uncaught_briefly()
            raise problems from exception
        except Exception:  # noqa: BLE001  # a check that cannot read the folders must not hide the original error
            return


def _report_dir(trainer: Trainer) -> str | None:
    """Where the dataset report goes: the run folder, written by the first process only."""
    return trainer.default_root_dir if trainer.is_global_zero else None
