# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""ELPV datamodule: the documented deterministic split, on a generated label file and on the real package."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_kd_ext.data import ELPV
from anomalib_kd_ext.data.elpv import elpv_samples


def make_elpv(root: Path, rows: list[tuple[str, float, str]]) -> Path:
    """Write an ELPV-layout folder (``images/`` and ``labels.csv``) with one grey image per row."""
    (root / "images").mkdir(parents=True)
    lines = []
    for name, probability, cell_type in rows:
        Image.fromarray(np.full((32, 32), 128, np.uint8)).save(root / "images" / name)
        lines.append(f"images/{name}  {probability}  {cell_type}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_split_rules(tmp_path: Path) -> None:
    """Probability 0 → normal, >= 2/3 → anomalous test, 1/3 dropped; every 4th normal (by name) → test."""
    rows = [(f"cell{i:04d}.png", 0.0, "mono") for i in range(8)]
    rows += [("cell0100.png", 0.3333333333333333, "mono"), ("cell0101.png", 0.6666666666666666, "mono")]
    rows += [("cell0102.png", 1.0, "mono"), ("cell0103.png", 0.0, "poly"), ("cell0104.png", 1.0, "poly")]
    root = make_elpv(tmp_path, rows)
    samples = elpv_samples(root, "mono")
    split = {Path(path).name: (label, part) for path, label, part in zip(*samples.values(), strict=True)}
    assert "cell0100.png" not in split  # uncertain
    assert "cell0103.png" not in split  # other cell type
    assert split["cell0101.png"] == (1, "test")
    assert split["cell0102.png"] == (1, "test")
    assert [name for name, (_, part) in split.items() if part == "test" and split[name][0] == 0] == [
        "cell0003.png",
        "cell0007.png",
    ]
    assert sum(part == "train" for _, part in split.values()) == 6
    assert len(elpv_samples(root, "all")["image_path"]) == len(samples["image_path"]) + 2
    limited = elpv_samples(root, "mono", max_train_images=3)
    assert [Path(p).name for p, s in zip(limited["image_path"], limited["split"], strict=True) if s == "train"] == [
        "cell0000.png",
        "cell0002.png",
        "cell0005.png",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell_type": "thin"}, "cell_type must be one of"),
        ({"test_normal_every": 1}, "test_normal_every must be >= 2"),
        ({"max_train_images": 0}, "max_train_images must be a positive"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    """A bad cell type, test split period or training image count is refused with its message."""
    root = make_elpv(tmp_path, [("cell0000.png", 0.0, "mono"), ("cell0001.png", 1.0, "mono")])
    with pytest.raises(ValueError, match=message):
        ELPV(root=root, **kwargs)


def test_missing_label_file(tmp_path: Path) -> None:
    """A root without ``labels.csv`` raises ``FileNotFoundError`` naming it."""
    with pytest.raises(FileNotFoundError, match=r"labels\.csv"):
        ELPV(root=tmp_path)


def test_installed_package() -> None:
    """The real package: the split sizes of the module docstring, grayscale cells loaded as RGB tensors."""
    pytest.importorskip("elpv_dataset", reason="install the `elpv` extra")
    datamodule = ELPV(num_workers=0, eval_batch_size=2, val_split_mode="same_as_test")
    datamodule.setup()
    labels = datamodule.test_data.samples.label_index
    assert (len(datamodule.train_data), int((labels == 0).sum()), int((labels == 1).sum())) == (441, 147, 369)
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.image.shape == (2, 3, 300, 300)
    assert batch.gt_mask is None
