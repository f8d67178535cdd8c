# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Checks of the dataset a model is trained and tested on, run before anomalib reads it.

Each check names the path, the problem and the fix, where anomalib would otherwise fail later with a bare NumPy,
PIL or ``URLError`` message, or, worse, train and report numbers on data it misread.

Example:
    >>> from anomalib.data import MVTecAD
    >>> check_dataset_available(MVTecAD(root="/no/such/root", category="bottle"))  # doctest: +SKIP
    WARNING ... MVTecAD data not found at '/no/such/root/bottle': anomalib will try to download it ...
"""

import logging
import os
import sys
from pathlib import Path
from types import TracebackType

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

logger = logging.getLogger(__name__)


def check_dataset_available(datamodule: object) -> bool:
    """Say that ``root/category`` is missing and how to point at it (called when preparing the data failed).

    anomalib's ``MVTecAD``-style datamodules download a missing category in ``prepare_data``; without network that
    fails with a bare ``URLError`` after it has created an empty root folder. The warning names the path and the fix.
    Nothing is probed (no network access from here). Datamodules without ``root`` and ``category`` (``Folder``,
    which checks its own paths) are left alone.

    Returns:
        bool: Whether the data is on disk (``True`` also for datamodules that are not checked).
    """
    root, category = getattr(datamodule, "root", None), getattr(datamodule, "category", None)
    if root is None or category is None or (Path(root) / str(category)).is_dir():
        return True
    logger.warning(
        "%s data not found at '%s', and anomalib could not prepare it (its download needs the internet). Point "
        "`root` (CLI: --data.root) at the folder that contains '%s/', or use anomalib's Folder datamodule for your "
        "own images.",
        type(datamodule).__name__,
        Path(root) / str(category),
        category,
    )
    return False


# PIL modes whose values exceed 8 bits: anomalib's ``read_image`` (``Image.open(path).convert("RGB")``) saturates them.
HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Bytes at the end of a complete file; a truncated download or copy lacks them.
PNG_END = b"IEND\xaeB`\x82"
JPEG_END = b"\xff\xd9"
TAIL_BYTES = 1024
REPORT_NAME = "dataset_problems.txt"

# Problem kind -> (what it is, how to fix it).
PROBLEMS = {
    "missing": ("file not found", "restore the files or remove them from the dataset folders"),
    "empty": ("empty (0 bytes)", "replace them with the real images or delete them"),
    "unreadable": ("not an image PIL can read", "delete them or re-export them as PNG/JPEG"),
    "truncated": ("truncated (the file ends before the image does)", "copy or download them again"),
    "high_bit_depth": (
        "more than 8 bits per pixel (anomalib's convert('RGB') saturates them to almost white)",
        "convert the dataset to 8-bit (scale each image to 0-255)",
    ),
    "mask_size": ("mask size differs from its image's", "resize the masks (nearest neighbour) to their images"),
    "no_mask": ("anomalous image without a mask while others have one", "add the masks or drop the images"),
    "mask_without_image": (
        "mask without an anomalous image of its name (anomalib pairs masks and images by sorted position)",
        "delete the stray masks or add their images",
    ),
}
# Image suffixes anomalib's folder datasets list (torchvision's, compared in lower case).
MASK_FOLDER_SUFFIXES = {extension.lower() for extension in IMG_EXTENSIONS}


class DatasetProblemsError(ValueError):
    """Every bad file of a dataset, grouped by kind; ``report`` is the file with the full list."""

    show_briefly = True  # an uncaught one is printed as its message alone (see ``show_uncaught_briefly``)

    def __init__(self, message: str, problems: list[tuple[str, str, str]], report: Path | None) -> None:
        super().__init__(message)
        self.problems = problems
        self.report = report


def check_image_files(datamodule: object, report_dir: Path | str | None = None) -> None:
    """Check every image and mask of a set-up datamodule; raise once, listing every file anomalib would misread.

    Looks for: a missing or empty (0-byte) file, a file PIL cannot identify (corrupt or not an image), a PNG / JPEG
    that is truncated (its end marker is missing), a 16-bit or float image (anomalib's ``read_image`` converts with
    ``convert("RGB")``, which saturates every value above 255), a mask whose size differs from its image's, and an
    anomalous image without a mask where the others have masks. Grayscale, palette and RGBA images are fine. Only
    the header and the last kilobyte of each file are read.

    Args:
        datamodule: A set-up anomalib datamodule (``train_data`` / ``test_data`` with ``samples``), or ``None``.
        report_dir: Folder for ``dataset_problems.txt``, the full list (one line per file). ``None``: the
            message is the only report.

    Raises:
        DatasetProblemsError: A ``ValueError`` whose message (at most about ten lines) counts the files of each
            kind, names the first of each, says the fix and points at the full list.
    """
    frames = [getattr(getattr(datamodule, name, None), "samples", None) for name in ("train_data", "test_data")]
    problems: list[tuple[str, str, str]] = []
    checked = 0
    for samples in (frame for frame in frames if frame is not None and len(frame)):
        masks = list(samples["mask_path"]) if "mask_path" in samples else [""] * len(samples)
        labels = list(samples["label_index"]) if "label_index" in samples else [0] * len(samples)
        masked = any(isinstance(mask, str) and mask for mask, label in zip(masks, labels, strict=True) if label == 1)
        for image_path, mask_path, label in zip(samples["image_path"], masks, labels, strict=True):
            checked += 1
            image_size = _inspect(Path(image_path), problems)
            has_mask = isinstance(mask_path, str) and bool(mask_path)
            if has_mask:
                mask_size = _inspect(Path(mask_path), problems)
                if mask_size is not None and image_size is not None and mask_size != image_size:
                    detail = f"mask {mask_size[0]}x{mask_size[1]}, image {image_size[0]}x{image_size[1]}"
                    problems.append(("mask_size", str(mask_path), f"{detail} ({image_path})"))
            elif masked and label == 1:
                problems.append(("no_mask", str(image_path), ""))
    if problems:
        raise _problems_error(problems, checked, report_dir)


def check_mask_folders(datamodule: object, report_dir: Path | str | None = None) -> None:
    """Check that the mask folders and anomalous image folders of a datamodule pair up (set up or not).

    anomalib's ``Folder`` and MVTec-style datasets give the i-th sorted mask to the i-th sorted anomalous image. A
    stray mask (one without its image) or a missing one shifts every later pair, or stops ``setup`` with a bare
    pandas / NumPy length error. This lists the folders the way anomalib does and pairs each mask with the anomalous
    image whose name its name contains (anomalib's own test: ``image stem in mask stem``), so that every mask without
    an image and every anomalous image without a mask is named at once (in place of anomalib's error, when its
    ``setup`` fails on them).

    Handles ``Folder`` (``abnormal_dir`` + ``mask_dir``) and the MVTec layout (``root/category/test/<defect>`` with
    ``ground_truth/<defect>``; ``split_root`` for VisA). Other datamodules are left alone.

    Raises:
        DatasetProblemsError: As :func:`check_image_files`, with kinds ``mask_without_image`` and ``no_mask``.
    """
    problems: list[tuple[str, str, str]] = []
    pairs = _mask_folder_pairs(datamodule)
    for images, masks, expected in pairs:
        _pair_by_name(images, masks, expected, problems)
    if problems:
        checked = sum(len(images) + len(masks) for images, masks, _ in pairs)
        raise _problems_error(problems, checked, report_dir, outcome="nothing was run")


def _listed(folders: list[Path]) -> list[Path]:
    """Image files under ``folders`` (recursively, as anomalib lists them), sorted."""
    return sorted(
        path
        for folder in folders
        if folder.is_dir()
        for path in folder.glob("**/*")
        if path.suffix.lower() in MASK_FOLDER_SUFFIXES and path.is_file()
    )


def _mask_folder_pairs(datamodule: object) -> list[tuple[list[Path], list[Path], bool]]:
    """(anomalous images, masks, masks expected) that anomalib will pair, one per defect folder."""
    root = getattr(datamodule, "root", None)
    if getattr(datamodule, "mask_dir", None) and getattr(datamodule, "abnormal_dir", None):  # anomalib's Folder

        def folders(value: object) -> list[Path]:
            values = value if isinstance(value, list | tuple) else [value]
            return [Path(v) if Path(v).is_absolute() or root is None else Path(root) / v for v in values]

        masks = _listed(folders(getattr(datamodule, "mask_dir", None)))
        return [(_listed(folders(getattr(datamodule, "abnormal_dir", None))), masks, bool(masks))]
    category = getattr(datamodule, "category", None)
    if root is None or category is None:
        return []
    base = Path(getattr(datamodule, "split_root", None) or root) / str(category)
    truth = base / "ground_truth"
    if not truth.is_dir() or not (base / "test").is_dir():
        return []
    defects = sorted(d.name for d in (base / "test").iterdir() if d.is_dir() and d.name != "good")
    defects += sorted(d.name for d in truth.iterdir() if d.is_dir() and d.name not in defects)
    return [(_listed([base / "test" / defect]), _listed([truth / defect]), True) for defect in defects]


def _pair_by_name(images: list[Path], masks: list[Path], expected: bool, problems: list[tuple[str, str, str]]) -> None:
    """Record masks whose name holds no image's name, and images no mask names (the longest match wins).

    ``expected`` is false for a Folder dataset without masks (classification data): nothing to pair.
    """
    if not expected:
        return
    unclaimed = {image.stem: image for image in images}
    stems = sorted(unclaimed, key=len, reverse=True)
    for mask in masks:
        stem = next((s for s in stems if s in mask.stem and s in unclaimed), None)
        if stem is None:
            problems.append(("mask_without_image", str(mask), ""))
        else:
            del unclaimed[stem]
    problems.extend(("no_mask", str(image), "") for image in unclaimed.values())


def _inspect(path: Path, problems: list[tuple[str, str, str]]) -> tuple[int, int] | None:
    """Size of the image at ``path``, or ``None`` after recording why it cannot be used."""
    if not path.is_file():
        problems.append(("missing", str(path), ""))
        return None
    file_size = path.stat().st_size
    if file_size == 0:
        problems.append(("empty", str(path), ""))
        return None
    try:
        with Image.open(path) as image:
            mode, size, image_format = image.mode, image.size, image.format
    except (UnidentifiedImageError, OSError) as exc:
        problems.append(("unreadable", str(path), str(exc)))
        return None
    end = {"PNG": PNG_END, "JPEG": JPEG_END}.get(image_format or "")
    if end is not None:
        with path.open("rb") as file:
            file.seek(max(0, file_size - TAIL_BYTES))
            if end not in file.read():
                problems.append(("truncated", str(path), f"no {image_format} end marker"))
                return None
    if mode in HIGH_BIT_DEPTH_MODES:
        problems.append(("high_bit_depth", str(path), f"PIL mode {mode}"))
    return size


def show_uncaught_briefly() -> None:
    """Print an uncaught :class:`DatasetProblemsError` (or other error marked ``show_briefly``) as its message alone.

    The stock ``anomalib`` command lets the error of a bad dataset reach the interpreter, where anomalib's rich
    traceback handler prints some 150 lines of anomalib and Lightning frames around the ten-line report. The runtime
    callback (:class:`~anomalib_kd_ext.runtime.PluginRuntime`) calls this when such an error passes through a
    trainer (``on_exception``); it wraps the current ``sys.excepthook`` (rich's under the CLI) once: an uncaught error
    whose class sets ``show_briefly`` is then printed as ``<Class>: <message>``
    and the process exits with status 1, as before; every other exception goes to the previous hook unchanged.
    Caught errors (the Python API, notebooks, which do not use ``sys.excepthook``) are not affected.
    """
    previous = sys.excepthook
    if getattr(previous, "shows_dataset_problems_briefly", False):
        return

    def hook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        if getattr(value, "show_briefly", False):
            print(f"{kind.__name__}: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    hook.shows_dataset_problems_briefly = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _problems_error(
    problems: list[tuple[str, str, str]],
    checked: int,
    report_dir: Path | str | None,
    outcome: str = "nothing was trained",
) -> ValueError:
    """The short message (and the full report file, when ``report_dir`` is given) for ``problems``."""
    report = None
    if report_dir is not None:
        report = Path(report_dir) / REPORT_NAME
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            lines = [f"{kind}\t{path}\t{detail}".rstrip() for kind, path, detail in problems]
            report.write_text("\n".join(lines) + "\n")
        except OSError:
            report = None  # the message alone still names every kind and a file of each
    kinds: dict[str, list[str]] = {}
    for kind, path, _ in problems:
        kinds.setdefault(kind, []).append(path)
    where = f"full list: {report}" if report is not None else "each kind below names its first file"
    lines = [f"{len(problems)} bad file(s) among {checked} images checked; {outcome} ({where}):"]
    for kind, paths in kinds.items():
        description, fix = PROBLEMS[kind]
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        lines.append(f"- {len(paths)} {description}: {paths[0]}{more}. Fix: {fix}.")
    return DatasetProblemsError("\n".join(lines), problems, report)


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
