# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""ELPV solar-cell datamodule: real electroluminescence images that install from PyPI and work offline.

The `elpv-dataset <https://pypi.org/project/elpv-dataset/>`_ package (CC BY-NC-SA 4.0, Deitsch et al.) ships
2,624 grayscale 300x300 images of monocrystalline and polycrystalline solar cells, each labelled with the
probability that it is defective (0, 1/3, 2/3 or 1). There are no pixel masks: this is an image-level dataset.

Split (deterministic, no random numbers involved):

- normal = defect probability 0; anomalous = defect probability >= 2/3; the uncertain 1/3 cells are left out;
- the normal cells of the chosen ``cell_type``, sorted by file name, go to the test split when their position is
  ``test_normal_every - 1`` modulo ``test_normal_every`` (one in four by default), else to training;
- every anomalous cell goes to the test split;
- ``max_train_images`` keeps that many training cells, evenly spaced in file-name order (for small CPU budgets).

With the defaults (``cell_type="mono"``): 441 training cells; 147 normal and 369 anomalous test cells.

Example:
    >>> from anomalib_kd_ext.data import ELPV
    >>> datamodule = ELPV(cell_type="mono", max_train_images=100)  # doctest: +SKIP
    >>> datamodule.setup()  # doctest: +SKIP
"""

import csv
import importlib.util
from pathlib import Path

from anomalib.data import Tabular
from anomalib.data.utils import LabelName, Split, ValSplitMode
from torchvision.transforms.v2 import Transform

CELL_TYPES = ("mono", "poly", "all")
ANOMALOUS_FROM = 2 / 3 - 1e-6  # probabilities are written 0.6666666666666666 in the label file


def elpv_root() -> Path:
    """The ``data`` folder of the installed ``elpv-dataset`` package (``labels.csv`` and ``images/``)."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        msg = (
            "The ELPV solar-cell images come from the PyPI package `elpv-dataset`, which is not installed: "
            "`pip install anomalib-kd-ext[elpv]` (or `pip install elpv-dataset`), or pass `root=` to a folder "
            "holding its `labels.csv` and `images/`."
        )
        raise ModuleNotFoundError(msg)
    return Path(spec.origin).parent / "data"


def read_labels(root: Path) -> list[tuple[str, float, str]]:
    """Rows ``(image path relative to root, defect probability, cell type)`` of ``root/labels.csv``."""
    labels = root / "labels.csv"
    if not labels.is_file():
        msg = f"ELPV label file not found: {labels}. `root` must hold the `labels.csv` and `images/` of elpv-dataset."
        raise FileNotFoundError(msg)
    rows = []
    with labels.open(newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter=" ", skipinitialspace=True), start=1):
            if not fields:
                continue
            if len(fields) != 3:
                msg = f"{labels}, line {number}: expected `path probability type`, got {fields!r}."
                raise ValueError(msg)
            rows.append((fields[0], float(fields[1]), fields[2]))
    return rows


def elpv_samples(
    root: Path,
    cell_type: str = "mono",
    test_normal_every: int = 4,
    max_train_images: int | None = None,
) -> dict[str, list]:
    """The ``Tabular`` samples of the split described in the module docstring."""
    if cell_type not in CELL_TYPES:
        msg = f"cell_type must be one of {CELL_TYPES}, got {cell_type!r}."
        raise ValueError(msg)
    if test_normal_every < 2:
        msg = (
            "test_normal_every must be >= 2 (one normal cell in that many goes to the test split), "
            f"got {test_normal_every}."
        )
        raise ValueError(msg)
    if max_train_images is not None and max_train_images < 1:
        msg = f"max_train_images must be a positive number of images or None, got {max_train_images}."
        raise ValueError(msg)
    rows = sorted(row for row in read_labels(root) if cell_type in {"all", row[2]})
    normal = [path for path, probability, _ in rows if probability == 0]
    anomalous = [path for path, probability, _ in rows if probability >= ANOMALOUS_FROM]
    train = [path for index, path in enumerate(normal) if index % test_normal_every != test_normal_every - 1]
    test_normal = [path for index, path in enumerate(normal) if index % test_normal_every == test_normal_every - 1]
    if max_train_images is not None and max_train_images < len(train):
        step = len(train) / max_train_images
        train = [train[int(index * step)] for index in range(max_train_images)]
    if not train or not anomalous:
        msg = f"ELPV under {root} has no usable {'training' if not train else 'anomalous'} cells of type {cell_type!r}."
        raise ValueError(msg)
    entries = (
        [(path, LabelName.NORMAL, Split.TRAIN) for path in train]
        + [(path, LabelName.NORMAL, Split.TEST) for path in test_normal]
        + [(path, LabelName.ABNORMAL, Split.TEST) for path in anomalous]
    )
    return {
        "image_path": [str(root / path) for path, _, _ in entries],
        "label_index": [int(label) for _, label, _ in entries],
        "split": [split.value for _, _, split in entries],
    }


class ELPV(Tabular):
    """ELPV solar cells as an anomalib datamodule (image-level labels only).

    Args:
        root: Folder with ``labels.csv`` and ``images/``. Defaults to the installed ``elpv-dataset`` package.
        cell_type: ``"mono"``, ``"poly"`` or ``"all"``. Defaults to ``"mono"``.
        test_normal_every: One normal cell in this many (file-name order) goes to the test split. Defaults to ``4``.
        max_train_images: Keep this many training cells, evenly spaced; ``None`` keeps all. Defaults to ``None``.
        train_batch_size, eval_batch_size, num_workers, *_augmentations, val_split_mode, val_split_ratio, seed:
            as in anomalib's datamodules.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        cell_type: str = "mono",
        test_normal_every: int = 4,
        max_train_images: int | None = None,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        val_split_mode: ValSplitMode | str = ValSplitMode.FROM_TEST,
        val_split_ratio: float = 0.5,
        seed: int | None = None,
    ) -> None:
        root = Path(root) if root is not None else elpv_root()
        self.cell_type = cell_type
        self.test_normal_every = test_normal_every
        self.max_train_images = max_train_images
        super().__init__(
            name=f"elpv_{cell_type}",
            samples=elpv_samples(root, cell_type, test_normal_every, max_train_images),
            root=root,
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
