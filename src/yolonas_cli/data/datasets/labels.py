"""Ground truth of one image (`Labels`) and YOLO txt label files.

Labels: the last `/images/` segment of an image path becomes `/labels/` and the suffix `.txt`; one object per
line, `class xc yc w h` normalised to [0, 1] (a polygon `class x1 y1 x2 y2 ...` counts as its bounding box).
A missing or empty label file is a background image; a malformed one makes the image a `CorruptSample`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.paths import read_regular_text


@dataclass(frozen=True)
class Labels:
    """Ground truth of one image.

    cls: int64 [N] contiguous class ids; boxes: float64 [N, 4] xyxy in original-image pixels;
    crowd: bool [N] (COCO `iscrowd`; never set by txt labels); area: float64 [N] (the COCO JSON `area`, else
    the box area).
    """

    cls: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray
    area: np.ndarray

    @staticmethod
    def empty() -> Labels:
        return Labels(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, bool), np.zeros(0))

    @staticmethod
    def from_xyxy(cls: Any, boxes: Any, crowd: Any = None, area: Any = None) -> Labels:
        """Labels from class ids [N] and xyxy pixel boxes [N, 4] (crowd: all False, area: the box area)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        crowd = np.zeros(n, bool) if crowd is None else np.asarray(crowd, dtype=bool)
        if area is None:
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return Labels(np.asarray(cls, dtype=np.int64).reshape(n), boxes, crowd, np.asarray(area, np.float64))

    def __len__(self) -> int:
        return len(self.cls)

    def select(self, keep: np.ndarray) -> Labels:
        """The rows where `keep` (bool [N]) is True."""
        return Labels(self.cls[keep], self.boxes[keep], self.crowd[keep], self.area[keep])

    def only_classes(self, classes: Sequence[int] | None) -> Labels:
        """Rows of these class ids (None: all)."""
        return self if classes is None else self.select(np.isin(self.cls, list(classes)))


class CorruptSample(YoloNasError):
    """An image that cannot be decoded or whose labels cannot be read; the loop reports and skips it."""


class ClassIdOutOfRange(CorruptSample):
    """A label line whose class id is a whole number >= nc: `val` skips the image like any CorruptSample,
    `train` stops on it (a class the model cannot learn means the labels or the YAML's names are wrong)."""


class _ClassIdTooLarge(ValueError):
    """`_parse_line`'s error for a whole-number class id >= nc."""


def label_path(image: Path) -> Path:
    """`.../images/x/a.jpg` -> `.../labels/x/a.txt` (the last `images` folder; else next to the image)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_line(line: str, nc: int) -> tuple[int, list[float]]:
    """One txt label line -> (class, [xc, yc, w, h] normalised). Raises ValueError when malformed."""
    values = line.split()
    numbers = [float(v) for v in values]
    if len(numbers) == 5:
        box = numbers[1:]
    elif len(numbers) >= 7 and len(numbers) % 2 == 1:  # a polygon: its bounding box
        xs, ys = numbers[1::2], numbers[2::2]
        box = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
    else:
        raise ValueError(f"expected 'class xc yc w h', got {len(values)} values")
    cls = numbers[0]
    if not np.isfinite(cls) or cls != int(cls) or cls < 0:
        raise ValueError(f"class {values[0]} is not an id in 0..{nc - 1}")
    if cls >= nc:
        raise _ClassIdTooLarge(f"class {values[0]} is not an id in 0..{nc - 1}")
    if not all(np.isfinite(box)) or min(box) < 0 or max(box) > 1.0 + 1e-6:
        raise ValueError("coordinates are not normalised to [0, 1]")
    return int(cls), box


def read_txt_labels(path: Path, hw: tuple[int, int], nc: int) -> Labels:
    """The labels of `path` for an image of size `hw` = (H, W); empty when the file is missing or empty.

    Boxes: `x1 = (xc - w / 2) * W`, `y1 = (yc - h / 2) * H`, `x2 = (xc + w / 2) * W`, `y2 = (yc + h / 2) * H`,
    float64, not clipped. Raises CorruptSample for a malformed line (ClassIdOutOfRange, a subclass, for a
    whole-number class id >= nc).
    """
    try:
        text = read_regular_text(path)  # a pipe in place of a label file is refused, not read (it would block)
    except FileNotFoundError:
        return Labels.empty()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptSample(f"label file {path} cannot be read ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_line(line, nc))
        except _ClassIdTooLarge as exc:
            raise ClassIdOutOfRange(f"{path} line {number}: {exc}") from None
        except ValueError as exc:
            raise CorruptSample(f"{path} line {number}: {exc}") from None
    if not rows:
        return Labels.empty()
    height, width = hw
    xywh = np.array([box for _, box in rows], dtype=np.float64)
    xc, yc, w, h = xywh.T
    x1, y1, x2, y2 = (xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height
    boxes = np.stack([x1, y1, x2, y2], 1)
    return Labels.from_xyxy([c for c, _ in rows], boxes)
