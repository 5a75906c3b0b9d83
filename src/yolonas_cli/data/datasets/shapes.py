"""A synthetic detection dataset of drawn shapes with exact boxes, in the Ultralytics YOLO format: for checking
that training learns (`scripts/train_check.py`) and for the training tests, without downloading anything.

Each image is a noisy background with 1 to `max_shapes` filled shapes of three classes (0 circle, 1 square,
2 triangle) in random colours and sizes, placed without overlapping. A box is the exact pixel extent of its
shape (drawn alone on a mask). Everything comes from one seeded generator: the same arguments give the same
files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

SHAPE_NAMES = {0: "circle", 1: "square", 2: "triangle"}
MAX_PLACEMENT_TRIES = 50  # random positions tried per shape before the image keeps fewer shapes


@dataclass(frozen=True)
class ShapesSpec:
    """What to write: image counts per split, the image size (h, w), shapes per image and their side range as a
    fraction of the smaller image side."""

    train: int = 200
    val: int = 50
    size: tuple[int, int] = (160, 160)
    max_shapes: int = 3
    min_side: float = 0.18
    max_side: float = 0.45
    seed: int = 0


def write_shapes_dataset(root: Path, spec: ShapesSpec = ShapesSpec()) -> Path:
    """images/{train,val}/*.png, labels/{train,val}/*.txt and data.yaml under `root`; returns the YAML's path."""
    rng = np.random.default_rng(spec.seed)
    for split, count in (("train", spec.train), ("val", spec.val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, rows = draw_image(spec, rng)
            cv2.imwrite(str(root / "images" / split / f"{index:05d}.png"), image)
            (root / "labels" / split / f"{index:05d}.txt").write_text("".join(yolo_line(r, spec.size) for r in rows))
    data = {"path": ".", "train": "images/train", "val": "images/val", "names": dict(SHAPE_NAMES)}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


def draw_image(spec: ShapesSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image (BGR uint8 [h, w, 3]) and its (class, box [x1, y1, x2, y2] in pixels, x2/y2 exclusive) rows."""
    height, width = spec.size
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 12, (height, width, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    taken = np.zeros((height, width), bool)
    rows: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, spec.max_shapes + 1))):
        placed = place_shape(spec, rng, taken)
        if placed is None:
            continue
        cls, mask = placed
        colour = rng.integers(0, 256, 3)
        while np.abs(colour - base).max() < 80:  # visible against the background (bounded: one draw in ~4 fails)
            colour = rng.integers(0, 256, 3)
        image[mask] = colour.astype(np.uint8)
        taken |= cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ys, xs = np.nonzero(mask)
        rows.append((cls, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)))
    return image, rows


def place_shape(spec: ShapesSpec, rng: np.random.Generator, taken: np.ndarray) -> tuple[int, np.ndarray] | None:
    """A random shape's (class, mask) that does not touch `taken`, or None after `MAX_PLACEMENT_TRIES` tries."""
    height, width = spec.size
    short = min(height, width)
    for _ in range(MAX_PLACEMENT_TRIES):
        cls = int(rng.integers(0, len(SHAPE_NAMES)))
        side = int(rng.uniform(spec.min_side, spec.max_side) * short)
        x0, y0 = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        mask = shape_mask(cls, (height, width), x0, y0, side)
        if mask.any() and not (mask & taken).any():
            return cls, mask
    return None


def shape_mask(cls: int, hw: tuple[int, int], x0: int, y0: int, side: int) -> np.ndarray:
    """The filled shape of class `cls` inside the square (x0, y0, side): bool [h, w]."""
    canvas = np.zeros(hw, np.uint8)
    if cls == 0:
        radius = side // 2
        cv2.circle(canvas, (x0 + radius, y0 + radius), radius, 1, -1, cv2.LINE_8)
    elif cls == 1:
        cv2.rectangle(canvas, (x0, y0), (x0 + side - 1, y0 + side - 1), 1, -1)
    else:
        points = np.array([[x0 + side // 2, y0], [x0, y0 + side - 1], [x0 + side - 1, y0 + side - 1]], np.int32)
        cv2.fillPoly(canvas, [points], 1, cv2.LINE_8)
    return canvas.astype(bool)


def yolo_line(row: tuple[int, np.ndarray], hw: tuple[int, int]) -> str:
    """`class xc yc w h` normalised to the image size."""
    cls, (x1, y1, x2, y2) = row
    height, width = hw
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return f"{cls} " + " ".join(f"{v:.6f}" for v in values) + "\n"
