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

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image, UnidentifiedImageError


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


# PIL modes whose values exceed 8 bits: anomalib's ``read_image`` (``Image.open(path).convert("RGB")``) saturates them.
HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def check_image_files(datamodule: object) -> None:
    """Read the header of every image and mask of a set-up datamodule; raise on the first one anomalib would misread.

    Stops, naming the file and the fix, on: an empty (0-byte) file, a file PIL cannot identify (corrupt or not an
    image), a 16-bit or float image (anomalib's ``read_image`` converts with ``convert("RGB")``, which saturates every
    value above 255: a 16-bit image becomes almost white without a warning), and a mask whose size differs from its
    image's. Grayscale, palette and RGBA images are fine (anomalib converts them to RGB). Only headers are read.

    Raises:
        ValueError: With the path of the offending file and what to do about it.
    """
    frames = [getattr(getattr(datamodule, name, None), "samples", None) for name in ("train_data", "test_data")]
    for samples in (frame for frame in frames if frame is not None and len(frame)):
        masks = samples["mask_path"] if "mask_path" in samples else [""] * len(samples)
        for image_path, mask_path in zip(samples["image_path"], masks, strict=True):
            image_size = _image_size(Path(image_path))
            if isinstance(mask_path, str) and mask_path:
                mask_size = _image_size(Path(mask_path))
                if mask_size != image_size:
                    msg = (
                        f"Mask {mask_path} is {mask_size[0]}x{mask_size[1]} but its image {image_path} is "
                        f"{image_size[0]}x{image_size[1]}: resize the mask (nearest neighbour) to its image."
                    )
                    raise ValueError(msg)


def _image_size(path: Path) -> tuple[int, int]:
    if not path.is_file():
        msg = f"Image file not found: {path}. Remove it from the dataset listing or restore the file."
        raise ValueError(msg)
    if path.stat().st_size == 0:
        msg = f"Image file is empty (0 bytes): {path}. Remove it or replace it with the real image."
        raise ValueError(msg)
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except (UnidentifiedImageError, OSError) as exc:
        msg = f"Cannot read {path} as an image ({exc}). Remove it or re-export it as PNG/JPEG."
        raise ValueError(msg) from exc
    if mode in HIGH_BIT_DEPTH_MODES:
        msg = (
            f"{path} is a {mode} image (more than 8 bits per pixel). anomalib reads images with PIL's "
            "convert('RGB'), which saturates every value above 255, so this image would train as almost white. "
            "Convert the dataset to 8-bit first (scale each image to 0-255), e.g. with PIL or OpenCV."
        )
        raise ValueError(msg)
    return size


def check_test_set(trainer: object | None) -> None:
    """Refuse to test on a set whose metrics would be meaningless numbers.

    An MVTec-layout category with an empty ``test`` folder does not stop anomalib: it moves some training images
    into the test set and reports image and pixel AUROC / F1 of 0.0, since no image is anomalous. This raises
    instead, before any image is scored.

    Raises:
        ValueError: If the test set has no images, or no anomalous image (``label_index`` 1).
    """
    loaders = getattr(trainer, "test_dataloaders", None) if trainer is not None else None
    if loaders is None:
        return
    for loader in loaders if isinstance(loaders, list | tuple) else [loaders]:
        dataset = getattr(loader, "dataset", None)
        samples = getattr(dataset, "samples", None)
        if samples is None or "label_index" not in samples:
            continue  # not an anomalib dataset: nothing to check
        if len(samples) == 0:
            msg = "The test set is empty: add normal and anomalous test images (MVTec layout: test/good, "
            msg += "test/<defect type>) before testing."
            raise ValueError(msg)
        if not (samples["label_index"] == 1).any():
            where = f"under {os.path.commonpath([str(path) for path in samples['image_path']])}"
            msg = (
                f"The test set {where} has {len(samples)} images and none of them is anomalous, so image and pixel "
                "AUROC / F1 are undefined (anomalib would report 0.0). Add anomalous images (MVTec layout: "
                "test/<defect type>/, with masks in ground_truth/<defect type>/), or use predict instead of test."
            )
            raise ValueError(msg)
