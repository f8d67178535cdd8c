# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Lazy registration of the plugin models with anomalib.

anomalib resolves ``--model NAME`` among the subclasses of ``AnomalibModule`` that are already
imported, and it has no entry-point group for plugins. The wheel therefore ships a ``.pth`` file
whose single line calls :func:`install`. That puts a finder on ``sys.meta_path`` which does nothing
until ``anomalib.models`` is imported; right after that module has executed, it imports
``anomalib_kd_ext.models`` and ``anomalib_kd_ext.data`` so that ``AAND``, ``DSKD`` and ``ELPV`` are registered.
Interpreters that never import anomalib pay only for importing this module.

The plugin's runtime around its models (dataset checks, atomic checkpoints, resumable random streams, DDP settings;
:class:`anomalib_kd_ext.runtime.PluginRuntime`) is a Lightning callback: :func:`lightning_callbacks`, registered in
Lightning's ``lightning.pytorch.callbacks_factory`` entry-point group, gives it to every ``Trainer``.

A broken plugin must never break anomalib: any error while importing the plugin is turned into a
warning. Set ``ANOMALIB_KD_EXT_AUTOLOAD=0`` to switch the hook (and the runtime callback below) off.
"""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

TARGET_MODULE = "anomalib.models"
PLUGIN_MODULES = ("anomalib_kd_ext.models", "anomalib_kd_ext.data")


def _import_plugin() -> None:
    try:
        for module in PLUGIN_MODULES:
            importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001  anything the plugin raises must stay a warning
        warnings.warn(
            f"anomalib-kd-ext: the models AAND/DSKD and the ELPV datamodule could not be registered with anomalib "
            f"({exc!r}). anomalib works without them; run `python -c 'import {module}'` to see the full error.",
            RuntimeWarning,
            stacklevel=2,
        )


class _ImportPluginAfterLoader(importlib.abc.Loader):
    """Delegates to the real loader of ``anomalib.models``, then imports the plugin."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _import_plugin()

    def __getattr__(self, name: str) -> object:
        # Resource readers, ``is_package`` and friends come from the real loader.
        return getattr(self._loader, name)


class _AnomalibModelsFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``anomalib.models`` once."""

    def find_spec(  # noqa: PLR6301  # a MetaPathFinder method, looked up on the instance in sys.meta_path
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET_MODULE:
            return None
        uninstall()  # one shot: the hook has no further use once anomalib.models is found
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is not None and (spec := find_spec(fullname, path, target)) is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ImportPluginAfterLoader(spec.loader)
        return spec


_FINDER = _AnomalibModelsFinder()


def install() -> None:
    """Arm the hook (called from the ``.pth`` file at interpreter start)."""
    if os.environ.get("ANOMALIB_KD_EXT_AUTOLOAD", "1") == "0":
        return
    if TARGET_MODULE in sys.modules:
        _import_plugin()
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Remove the hook from ``sys.meta_path``."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def lightning_callbacks() -> list:
    """Lightning's ``callbacks_factory`` entry point: the plugin's runtime callback for every ``Trainer``.

    Nothing is added where anomalib is not imported (no anomalib model can be trained then) or with
    ``ANOMALIB_KD_EXT_AUTOLOAD=0``; the callback itself acts only on the plugin's models. A failure is a
    warning: the plugin must never break a Lightning run.
    """
    if "anomalib" not in sys.modules or os.environ.get("ANOMALIB_KD_EXT_AUTOLOAD", "1") == "0":
        return []
    try:
        from anomalib_kd_ext.runtime import PluginRuntime  # imports anomalib: only when it is there

        return [PluginRuntime()]
    except Exception as exc:  # noqa: BLE001  anything the plugin raises must stay a warning
        warnings.warn(f"anomalib-kd-ext: the runtime callback was not added ({exc!r}).", RuntimeWarning, stacklevel=2)
        return []
