"""A small dataset made from the bundled sample photos, for INT8 calibration checks without a real dataset
(the tests and `scripts/gpu_check.py`): train holds the photos and their mirror images, val the photos;
80 classes and no labels (labels are the caller's to add)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import yaml

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.data.sources import default_source

PHOTOS: tuple[Path, ...] = tuple(sorted(p for p in default_source().iterdir() if p.suffix in (".png", ".jpg")))


def write_photo_dataset(root: Path) -> Path:
    """images/train (photos and mirrors), images/val (photos) and data.yaml (80 classes) under `root`;
    returns the YAML."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
    for photo in PHOTOS:
        image = cv2.imread(str(photo))
        if image is None:
            raise YoloNasError(f"cannot read the bundled photo {photo}")
        cv2.imwrite(str(root / "images" / "train" / f"{photo.stem}.png"), image)
        cv2.imwrite(str(root / "images" / "train" / f"{photo.stem}_flip.png"), image[:, ::-1])
        shutil.copy(photo, root / "images" / "val" / photo.name)
    spec = {"path": ".", "train": "images/train", "val": "images/val", "nc": 80}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"
