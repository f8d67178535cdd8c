# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Fail fast, naming the path, when a dataset is missing and cannot be downloaded.

anomalib's ``MVTecAD``-style datamodules download a missing category in ``prepare_data``. Without
network the download fails with a bare ``URLError`` and leaves an empty root folder behind. The
models call :func:`check_dataset_available` before ``prepare_data`` runs, so that an offline user
with a wrong ``--data.root`` gets the path and the fix instead. With network, nothing changes.

Example:
    >>> from anomalib.data import MVTecAD
    >>> check_dataset_available(MVTecAD(root="/no/such/root", category="bottle"))  # doctest: +SKIP
    Traceback (most recent call last):
    FileNotFoundError: MVTecAD data not found at '/no/such/root/bottle' ...
"""

import socket
import sys
from pathlib import Path
from urllib.parse import urlparse


def _host_resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def check_dataset_available(datamodule: object) -> None:
    """Raise ``FileNotFoundError`` if ``root/category`` is missing and its download source is unreachable.

    Datamodules without ``root`` and ``category`` (``Folder``, for example, which checks its own
    paths) are left alone.
    """
    root, category = getattr(datamodule, "root", None), getattr(datamodule, "category", None)
    if root is None or category is None:
        return
    target = Path(root) / str(category)
    if target.is_dir():
        return
    download_info = getattr(sys.modules.get(type(datamodule).__module__), "DOWNLOAD_INFO", None)
    host = urlparse(str(getattr(download_info, "url", ""))).hostname
    if host and _host_resolves(host):
        return  # anomalib downloads it
    reason = f"{host} cannot be reached" if host else "it has no download source"
    msg = (
        f"{type(datamodule).__name__} data not found at '{target}', and it cannot be downloaded ({reason}). "
        f"Point `root` (CLI: --data.root) at the folder that contains '{category}/', "
        "or use anomalib's Folder datamodule for your own images."
    )
    raise FileNotFoundError(msg)


def check_trainer_dataset(trainer: object | None) -> None:
    """Run :func:`check_dataset_available` on the datamodule attached to a trainer, if any."""
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is not None:
        check_dataset_available(datamodule)
