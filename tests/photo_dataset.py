"""A small dataset made from the bundled photos, for calibration and INT8 tests and for scripts/gpu_check.py
(no pytest needed): train holds the photos and their mirror images, val the photos; labels are the caller's."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import yaml

ASSETS = Path(__file__).resolve().parents[1] / "src" / "yolonas_cli" / "assets"
PHOTOS = sorted(p for p in ASSETS.iterdir() if p.suffix in (".png", ".jpg"))


def write_photo_dataset(root: Path) -> Path:
    """images/train (photos and mirrors), images/val (photos) and data.yaml (80 classes) under `root`;
    returns the YAML."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
    for photo in PHOTOS:
        image = cv2.imread(str(photo))
        cv2.imwrite(str(root / "images" / "train" / f"{photo.stem}.png"), image)
        cv2.imwrite(str(root / "images" / "train" / f"{photo.stem}_flip.png"), image[:, ::-1])
        shutil.copy(photo, root / "images" / "val" / photo.name)
    spec = {"path": ".", "train": "images/train", "val": "images/val", "nc": 80}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"
