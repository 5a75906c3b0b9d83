"""A training sample and what a transform is (the original's `DetectionSample`; training-facts.md §9.2): the
image, its boxes (xyxy pixels) and labels, the sample constructor that clips and drops boxes as the original's
does, and the load-resize every transform shares. The transforms are in augment.py and affine.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

__all__ = ["HW", "ExtraSample", "TrainSample", "Transform", "resize_by"]

HW = tuple[int, int]
ExtraSample = Callable[[], "TrainSample"]


@dataclass(frozen=True, eq=False)
class TrainSample:
    """One training sample: image uint8 HxWx3 BGR (float32 3xHxW in [0, 1] after `Standardize`),
    boxes float32 [n, 4] xyxy pixels, labels int64 [n]."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray

    @staticmethod
    def make(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> TrainSample:
        """A sample whose boxes are clipped to `image` (x to [0, W], y to [0, H]) and of positive area."""
        height, width = image.shape[:2]
        upper = np.array([width, height, width, height], np.float32)
        boxes = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), np.float32(0), upper)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return TrainSample(image, boxes[keep], np.asarray(labels, np.int64).reshape(-1)[keep])

    @property
    def hw(self) -> HW:
        return int(self.image.shape[0]), int(self.image.shape[1])


class Transform(Protocol):
    """What every transform is: a function of the sample, the sample's Generator and the extra-sample loader."""

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample: ...


def resize_by(image: np.ndarray, ratio: float) -> np.ndarray:
    """`image` resized by `ratio` to (int(w * ratio), int(h * ratio)) with OpenCV INTER_LINEAR (the original's
    rounding: truncation). Sides never drop below 1 pixel (the original would fail there)."""
    height, width = image.shape[:2]
    size = (max(1, int(width * ratio)), max(1, int(height * ratio)))
    if size == (width, height):
        return image  # what cv2.resize does for an unchanged size: a copy of the same pixels
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
