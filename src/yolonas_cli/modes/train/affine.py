"""The original's `DetectionRandomAffine` (training-facts.md §9.2): the random draw, the affine matrix built from
it, the boxes warped through it and the candidate filter that drops boxes the warp shrank or distorted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from yolonas_cli.modes.train.sample import HW, ExtraSample, TrainSample

__all__ = ["AffineDraw", "RandomAffine", "affine_matrix", "box_candidates", "warp_boxes"]


@dataclass(frozen=True)
class AffineDraw:
    """The six random numbers of one RandomAffine call, in the order they are drawn."""

    angle: float  # degrees, counter-clockwise (OpenCV's getRotationMatrix2D)
    scale: float
    shear_x: float  # degrees
    shear_y: float  # degrees
    translate_x: float  # fraction, centre 0.5
    translate_y: float  # fraction, centre 0.5


def affine_matrix(in_hw: HW, out_hw: HW, draw: AffineDraw) -> np.ndarray:
    """The original's 3x3 matrix `T @ Sh @ R @ C` (float64) mapping input pixels to output pixels.

    C moves the input centre (w_in // 2, h_in // 2) to the origin; R rotates by `angle` and scales by `scale`
    (getRotationMatrix2D about the origin); Sh is [[1, tan(shear_x)], [tan(shear_y), 1]]; T translates by
    (translate_x * h_out, translate_y * w_out). The original multiplies the x translation by the output
    HEIGHT and y by the WIDTH (it indexes an OpenCV (w, h) size as (h, w)); identical for square outputs,
    kept as is for non-square ones (the COCO recipe's `target_size=None` on non-square images).
    """
    in_h, in_w = in_hw
    out_h, out_w = out_hw
    centre = np.array([[1.0, 0.0, -(in_w // 2)], [0.0, 1.0, -(in_h // 2)], [0.0, 0.0, 1.0]])
    rotation = np.eye(3)
    rotation[:2] = cv2.getRotationMatrix2D((0.0, 0.0), draw.angle, draw.scale)
    shear = np.eye(3)
    shear[0, 1] = math.tan(math.radians(draw.shear_x))
    shear[1, 0] = math.tan(math.radians(draw.shear_y))
    translation = np.eye(3)
    translation[0, 2] = draw.translate_x * out_h
    translation[1, 2] = draw.translate_y * out_w
    return translation @ shear @ rotation @ centre


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray, out_hw: HW) -> np.ndarray:
    """Boxes [n, 4] xyxy through the 3x3 `matrix`: the 4 corners transformed, their axis-aligned min/max box,
    clipped to the output (x to [0, W], y to [0, H]). float32 [n, 4]."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    moved = (corners @ matrix.T)[:, :2].reshape(n, 4, 2)
    out_h, out_w = out_hw
    warped = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
    return np.clip(warped, 0, [out_w, out_h, out_w, out_h]).astype(np.float32)


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float, ar_thr: float, area_thr: float) -> np.ndarray:
    """Which warped boxes to keep (bool [n]): both sides of `after` > wh_thr, area(after) / area(before) >
    area_thr (`before` = the boxes before the transform, not rescaled), aspect ratio < ar_thr."""
    w1, h1 = (before[:, 2] - before[:, 0]).astype(np.float64), (before[:, 3] - before[:, 1]).astype(np.float64)
    w2, h2 = (after[:, 2] - after[:, 0]).astype(np.float64), (after[:, 3] - after[:, 1]).astype(np.float64)
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (aspect < ar_thr)


@dataclass(frozen=True)
class RandomAffine:
    """`DetectionRandomAffine`: rotation, scale, shear and translation in one warp (never skipped).

    Draws (`AffineDraw` order): angle U(-degrees, degrees), scale U(scales), shear x and y U(-shear, shear),
    translation x and y U(0.5 - translate, 0.5 + translate). Image: `cv2.warpAffine` to `target_size`
    ((h, w); None keeps the input size) with INTER_LINEAR and `border_value`. Boxes: `warp_boxes`; with
    `filter_box_candidates`, `box_candidates(wh_thr, ar_thr, area_thr)` against the boxes before the warp.
    """

    degrees: float = 0.0
    translate: float = 0.1
    scales: tuple[float, float] = (0.5, 1.5)
    shear: float = 0.0
    target_size: HW | None = (640, 640)
    filter_box_candidates: bool = False
    wh_thr: float = 2.0
    ar_thr: float = 20.0
    area_thr: float = 0.1
    border_value: int = 128

    def draw(self, rng: np.random.Generator) -> AffineDraw:
        angle = rng.uniform(-self.degrees, self.degrees)
        scale = rng.uniform(*self.scales)
        shear_x, shear_y = rng.uniform(-self.shear, self.shear), rng.uniform(-self.shear, self.shear)
        tx = rng.uniform(0.5 - self.translate, 0.5 + self.translate)
        ty = rng.uniform(0.5 - self.translate, 0.5 + self.translate)
        return AffineDraw(float(angle), float(scale), float(shear_x), float(shear_y), float(tx), float(ty))

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        out_hw = self.target_size or sample.hw
        matrix = affine_matrix(sample.hw, out_hw, self.draw(rng))
        border = (self.border_value,) * 3
        image = cv2.warpAffine(sample.image, matrix[:2], (out_hw[1], out_hw[0]), borderValue=border)
        boxes, labels = warp_boxes(sample.boxes, matrix, out_hw), sample.labels
        if self.filter_box_candidates:
            keep = box_candidates(sample.boxes, boxes, self.wh_thr, self.ar_thr, self.area_thr)
            boxes, labels = boxes[keep], labels[keep]
        return TrainSample.make(image, boxes, labels)
