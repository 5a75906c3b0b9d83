"""Helpers of the training tests: small datasets and running `yolo-nas train` in a subprocess.

- `write_photo_crops(root)`: the 10 photo crops (96x96) of the original's trajectory fixture with their boxes
  (`fixtures/train/yolo_nas_tiny_train_trajectory.npz`), as a YOLO dataset with COCO's 80 names: real images,
  on which the fixture formula weights' predictions overlap the boxes enough for the loss to fall at once;
- `write_shapes(root)`: a few drawn-shapes images (`yolonas_cli.data.datasets.shapes`), 3 classes;
- `yolo_nas(...)`: the installed command with the environment of the test run, one torch thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from formula import FIXTURES
from yolonas_cli.core.coco import COCO80_NAMES
from yolonas_cli.data.datasets.shapes import ShapesSpec, write_shapes_dataset

SCRIPT = Path(sys.executable).parent / "yolo-nas"
TRAJECTORY = FIXTURES / "train" / "yolo_nas_tiny_train_trajectory.npz"
# Every augmentation off: the pipeline is then the identity warp, padding and /255 (tests/test_train_data.py).
NO_AUGMENTATION = ("mosaic=0", "translate=0", "scale=0", "fliplr=0", "hsv_h=0", "hsv_s=0", "hsv_v=0")


def write_photo_crops(root: Path, count: int = 8) -> Path:
    """The first `count` crops of the trajectory fixture in images/{train,val} (the same images in both) with
    their labels; returns data.yaml."""
    with np.load(TRAJECTORY) as data:
        for split in ("train", "val"):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                rgb = data[f"train_image_u8:{index}"].transpose(1, 2, 0)
                cv2.imwrite(str(root / "images" / split / f"{index:03d}.png"), rgb[:, :, ::-1])
                height, width = rgb.shape[:2]
                rows = data[f"train_target:{index}"]  # (class, cx, cy, w, h) in pixels
                lines = [
                    f"{int(c)} {cx / width:.7f} {cy / height:.7f} {w / width:.7f} {h / height:.7f}\n"
                    for c, cx, cy, w, h in rows
                ]
                (root / "labels" / split / f"{index:03d}.txt").write_text("".join(lines))
    spec = {"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(COCO80_NAMES))}
    (root / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "data.yaml"


def write_shapes(root: Path, train: int = 8, val: int = 4, size: int = 64) -> Path:
    return write_shapes_dataset(root, ShapesSpec(train=train, val=val, size=(size, size), seed=3))


def environment() -> dict[str, str]:
    """This test run's environment (PYTHONPATH included), one torch thread (fast and reproducible on a busy
    machine; every run of a comparison uses the same)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "YOLONAS_DEBUG": ""}


def yolo_nas(*tokens: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`yolo-nas <tokens>` in `cwd`; its output captured."""
    return subprocess.run(
        [str(SCRIPT), *tokens], cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout
    )


def start(*tokens: str, cwd: Path) -> subprocess.Popen[str]:
    """`yolo-nas <tokens>` started in `cwd` (for tests that signal it)."""
    return subprocess.Popen(
        [str(SCRIPT), *tokens], cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def error_lines(stderr: str) -> list[str]:
    """The lines of `stderr` that are errors."""
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files (`.<name>.<pid>.<hex>...`) anywhere under `folder`: what an atomic write leaves when cut."""
    return [p for p in folder.rglob(".*") if p.is_file()]


def tokens_of(values: dict[str, object]) -> Sequence[str]:
    return [f"{key}={value}" for key, value in values.items()]
