"""The original's detection training augmentations (SuperGradients 3.7.1; training-facts.md §9.2), written
from its documented behaviour.

A sample is `TrainSample(image, boxes, labels)`: `image` uint8 HxWx3 **BGR** (as OpenCV decodes it; the
original feeds BGR), `boxes` float32 [n, 4] xyxy in pixels of that image, `labels` int64 [n]. Every
transform that builds a new sample goes through `TrainSample.make`, which clips the boxes to the image and
drops boxes of zero area, as the original's `DetectionSample` constructor does. All box arithmetic is
vectorised over the boxes of a sample.

A transform is a frozen dataclass (its parameters are its fields, so a pipeline is plain data) called as
`transform(sample, rng, extra)`: `rng` is the numpy Generator every draw comes from and `extra()` returns
another random sample of the dataset, load-resized only (Mosaic and Mixup use it). The draw order inside
each transform is the original's and is listed in its docstring. The original's own random streams (Python
`random` and numpy's global state, seeded per worker from uuid4) cannot be reproduced (§9.6); ours come
from one Generator per sample (data.py), so a run is reproducible for a given seed. One deliberate change:
Mosaic and Mixup draw their probability before loading their extra samples (the original loads first),
which skips the image reads when they do not apply and changes no distribution.

The sample type lives in sample.py and RandomAffine in affine.py (both re-exported here).
`Pipeline` chains the transforms and ends with the original's `DetectionTargetsFormatTransform`; the
recipes' pipelines are built in `pipelines.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from yolonas_cli.modes.train.affine import AffineDraw, RandomAffine, affine_matrix, box_candidates, warp_boxes
from yolonas_cli.modes.train.sample import HW, ExtraSample, TrainSample, Transform, resize_by

__all__ = [
    "HSV",
    "RGB2BGR",
    "AffineDraw",
    "HorizontalFlip",
    "Mixup",
    "Mosaic",
    "PaddedRescale",
    "Pipeline",
    "RandomAffine",
    "Standardize",
    "TargetsFormat",
    "TrainSample",
    "Transform",
    "VerticalFlip",
    "affine_matrix",
    "box_candidates",
    "paste_quadrant",
    "resize_by",
    "shift_hsv",
    "warp_boxes",
]

# ---------------------------------------------------------------------------------------- mosaic


@dataclass(frozen=True)
class Mosaic:
    """`DetectionMosaic(input_dim, prob, border_value)`: four samples around a random centre.

    Draws: `random() < prob`; then (only if applied) 3 extra samples; `yc = int(U(0.5h, 1.5h))`,
    `xc = int(U(0.5w, 1.5w))`. The canvas is 2h x 2w filled with `border_value`; each sample is rescaled by
    `min(h/h0, w/w0)` (INTER_LINEAR) and placed with a corner on the centre: the sample's own image to the
    top left, the extras top right, bottom left, bottom right, each cropped at the canvas border. Output
    2h x 2w; boxes scaled and shifted with their image.
    """

    input_dim: HW = (640, 640)
    prob: float = 1.0
    border_value: int = 114

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        if not rng.random() < self.prob:
            return sample
        parts = [sample, extra(), extra(), extra()]
        height, width = self.input_dim
        yc = int(rng.uniform(0.5 * height, 1.5 * height))
        xc = int(rng.uniform(0.5 * width, 1.5 * width))
        canvas = np.full((2 * height, 2 * width, 3), self.border_value, np.uint8)
        boxes = []
        for quadrant, part in enumerate(parts):
            scale = min(height / part.image.shape[0], width / part.image.shape[1])
            ox, oy = paste_quadrant(canvas, resize_by(part.image, scale), quadrant, (xc, yc))
            boxes.append(part.boxes * np.float32(scale) + np.array([ox, oy, ox, oy], np.float32))
        return TrainSample.make(canvas, np.concatenate(boxes), np.concatenate([p.labels for p in parts]))


def paste_quadrant(canvas: np.ndarray, image: np.ndarray, quadrant: int, centre: tuple[int, int]) -> tuple[int, int]:
    """Paste `image` into `canvas` with its bottom-right (quadrant 0), bottom-left (1), top-right (2) or top-left
    (3) corner on `centre` = (x, y), cropped at the canvas border. Returns the image's origin (x, y) in canvas
    pixels (possibly negative): a pixel (x, y) of the image lands at (x + ox, y + oy)."""
    xc, yc = centre
    image_h, image_w = image.shape[:2]
    canvas_h, canvas_w = canvas.shape[:2]
    ox = xc - image_w if quadrant in (0, 2) else xc
    oy = yc - image_h if quadrant in (0, 1) else yc
    x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + image_w, canvas_w), min(oy + image_h, canvas_h)
    canvas[y1:y2, x1:x2] = image[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
    return ox, oy


# ---------------------------------------------------------------------------------------- mixup


@dataclass(frozen=True)
class Mixup:
    """`DetectionMixup(input_dim, mixup_scale, prob, flip_prob, border_value)`: blend with another sample.

    Draws: `random() < prob`; then (only if applied) 1 extra sample; its horizontal flip `random() <
    flip_prob`; the jitter `j = U(mixup_scale)`; the crop offsets `integers(0, extra_h)` then `integers(0,
    extra_w)` where the jittered canvas is larger than the current image. The extra image is rescaled by
    `min(ratio)` into the top-left of an `input_dim` canvas (None: the current image's size) filled with
    `border_value`, the canvas is rescaled by `j`, zero-padded to at least the current size and cropped to
    it; image = uint8(0.5 * current + 0.5 * other) (float64, truncated); the extra's boxes follow (scaled,
    clipped to the jittered canvas, shifted) and are appended to the current ones.
    """

    input_dim: HW | None = None
    mixup_scale: tuple[float, float] = (0.5, 1.5)
    prob: float = 0.5
    flip_prob: float = 0.5
    border_value: int = 114

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        if not rng.random() < self.prob:
            return sample
        other = HorizontalFlip(self.flip_prob)(extra(), rng, extra)
        jitter = rng.uniform(*self.mixup_scale)
        canvas_h, canvas_w = self.input_dim or sample.hw
        ratio = min(canvas_h / other.image.shape[0], canvas_w / other.image.shape[1])
        canvas = np.full((canvas_h, canvas_w, 3), self.border_value, np.uint8)
        resized = resize_by(other.image, ratio)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        canvas = resize_by(canvas, jitter)
        crop, (x_offset, y_offset) = _random_crop(canvas, sample.hw, rng)
        jittered_h, jittered_w = canvas.shape[:2]
        upper = np.array([jittered_w, jittered_h, jittered_w, jittered_h], np.float32)
        other_boxes = np.clip(other.boxes * np.float32(ratio * jitter), np.float32(0), upper)
        other_boxes = other_boxes - np.array([x_offset, y_offset, x_offset, y_offset], np.float32)
        image = (0.5 * sample.image + 0.5 * crop).astype(np.uint8)
        return TrainSample.make(
            image, np.concatenate([sample.boxes, other_boxes]), np.concatenate([sample.labels, other.labels])
        )


def _random_crop(canvas: np.ndarray, hw: HW, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """`canvas` zero-padded (bottom, right) to at least `hw` and cropped to `hw` at a random offset (y drawn
    first, then x, each `integers(0, excess)` where the canvas is larger). Returns the crop and (x, y)."""
    height, width = hw
    padded = np.zeros((max(canvas.shape[0], height), max(canvas.shape[1], width), 3), np.uint8)
    padded[: canvas.shape[0], : canvas.shape[1]] = canvas
    y_offset = int(rng.integers(0, padded.shape[0] - height)) if padded.shape[0] > height else 0
    x_offset = int(rng.integers(0, padded.shape[1] - width)) if padded.shape[1] > width else 0
    return padded[y_offset : y_offset + height, x_offset : x_offset + width], (x_offset, y_offset)


# ---------------------------------------------------------------------------------------- colour and flips


def shift_hsv(image: np.ndarray, dh: int, ds: int, dv: int) -> np.ndarray:
    """BGR uint8 -> OpenCV HSV (H 0..179); H = (H + dh) mod 180, S and V + ds / dv clipped to 0..255; -> BGR.
    (One lookup table per channel: the same integers as the per-pixel arithmetic.)"""
    values = np.arange(256, dtype=np.int64)
    table = np.stack([(values + dh) % 180, np.clip(values + ds, 0, 255), np.clip(values + dv, 0, 255)], axis=1)
    hsv = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_BGR2HSV), table.astype(np.uint8).reshape(256, 1, 3))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


@dataclass(frozen=True)
class HSV:
    """`DetectionHSV(prob, hgain, sgain, vgain)` on a BGR image.

    Draws: `random() < prob`; gains `U(-1, 1, 3) * (hgain, sgain, vgain)`; on/off `integers(0, 2, 3)`
    multiplied in (each channel independently); truncated to int16; then `shift_hsv`. The BGR -> HSV -> BGR
    round trip happens whenever the transform applies, also when all three gains come out 0 (as in the
    original; the 8-bit round trip is not lossless for every colour).
    """

    prob: float = 1.0
    hgain: float = 5.0
    sgain: float = 30.0
    vgain: float = 30.0

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        if not rng.random() < self.prob:
            return sample
        return TrainSample.make(shift_hsv(sample.image, *self.draw_gains(rng)), sample.boxes, sample.labels)

    def draw_gains(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(dh, ds, dv): U(-1, 1, 3) * gains, times integers(0, 2, 3), truncated toward zero (int16)."""
        gains = rng.uniform(-1, 1, 3) * np.array([self.hgain, self.sgain, self.vgain])
        dh, ds, dv = (gains * rng.integers(0, 2, 3)).astype(np.int16)
        return int(dh), int(ds), int(dv)


@dataclass(frozen=True)
class HorizontalFlip:
    """`DetectionHorizontalFlip(prob)`. Draw: `random() < prob`. Image `[:, ::-1]`; x1' = W - x2, x2' = W - x1."""

    prob: float = 0.5

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        if not rng.random() < self.prob:
            return sample
        width = sample.image.shape[1]
        boxes = sample.boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], np.float32)
        boxes += np.array([width, 0, width, 0], np.float32)
        return TrainSample.make(cv2.flip(sample.image, 1), boxes, sample.labels)  # = image[:, ::-1], faster


@dataclass(frozen=True)
class VerticalFlip:
    """`DetectionVerticalFlip(prob)` (not in the recipes; Ultralytics' `flipud`). Draw: `random() < prob`.
    Image `[::-1]`; y1' = H - y2, y2' = H - y1."""

    prob: float = 0.0

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        if not rng.random() < self.prob:
            return sample
        height = sample.image.shape[0]
        boxes = sample.boxes[:, [0, 3, 2, 1]] * np.array([1, -1, 1, -1], np.float32)
        boxes += np.array([0, height, 0, height], np.float32)
        return TrainSample.make(cv2.flip(sample.image, 0), boxes, sample.labels)  # = image[::-1]


@dataclass(frozen=True)
class RGB2BGR:
    """`DetectionRGB2BGR(prob)`: reverses the channel order. Draw: `random() < prob`."""

    prob: float = 0.5

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        if not rng.random() < self.prob:
            return sample
        return TrainSample.make(np.ascontiguousarray(sample.image[:, :, ::-1]), sample.boxes, sample.labels)


# ---------------------------------------------------------------------------------------- network input


@dataclass(frozen=True)
class PaddedRescale:
    """`DetectionPaddedRescale(input_dim, pad_value)`: fit into `input_dim` = (h, w) with r = min(h/h0, w/w0)
    (INTER_LINEAR, int sizes), pad bottom and right with `pad_value`; boxes * r (not clipped, as the original).
    No draws. The image stays uint8 HxWx3 here; `Standardize` makes the float CHW array."""

    input_dim: HW = (640, 640)
    pad_value: int = 114

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        height, width = self.input_dim
        ratio = min(height / sample.image.shape[0], width / sample.image.shape[1])
        resized = resize_by(sample.image, ratio)
        padded = np.full((height, width, 3), self.pad_value, np.uint8)
        padded[: resized.shape[0], : resized.shape[1]] = resized
        return TrainSample(padded, sample.boxes * np.float32(ratio), sample.labels)


@dataclass(frozen=True)
class Standardize:
    """`DetectionStandardize(max_value)`: HxWx3 uint8 -> 3xHxW float32 `x / max_value` (float32 division, equal
    to the original's for every uint8 value). No draws."""

    max_value: float = 255.0

    def __call__(self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample) -> TrainSample:
        # one pass, uint8 -> float32 division; the result keeps the HWC memory order (collate stacks it)
        chw = np.divide(sample.image.transpose(2, 0, 1), np.float32(self.max_value), dtype=np.float32)
        return TrainSample(chw, sample.boxes, sample.labels)


@dataclass(frozen=True)
class TargetsFormat:
    """`DetectionTargetsFormatTransform(LABEL_CXCYWH, min_bbox_edge_size)`, applied last: drops boxes with
    min(w, h) <= min_bbox_edge_size, then rows (class, cx, cy, w, h) float32 [n, 5] in pixels, computed in
    float32 as w = x2 - x1, cx = x1 + 0.5 * w (same for y)."""

    min_bbox_edge_size: float = 1.0

    def __call__(self, boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        wh = boxes[:, 2:] - boxes[:, :2]
        keep = wh.min(axis=1) > self.min_bbox_edge_size
        centre = boxes[:, :2] + np.float32(0.5) * wh
        rows = np.concatenate([np.asarray(labels, np.float32).reshape(-1, 1), centre, wh], axis=1)
        return np.ascontiguousarray(rows[keep], dtype=np.float32)


# ---------------------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class Pipeline:
    """Transforms in order, then `targets`. Must end with PaddedRescale and Standardize (the network input).

    `pipeline(sample, rng, extra)` -> (image float32 [3, H, W] in [0, 1], targets float32 [n, 5]
    (class, cx, cy, w, h) pixels).
    """

    steps: tuple[Transform, ...]
    targets: TargetsFormat = TargetsFormat()

    def __post_init__(self) -> None:
        kinds = [type(step) for step in self.steps[-2:]]
        if kinds != [PaddedRescale, Standardize]:
            raise ValueError("a training pipeline ends with PaddedRescale then Standardize")

    def __call__(
        self, sample: TrainSample, rng: np.random.Generator, extra: ExtraSample
    ) -> tuple[np.ndarray, np.ndarray]:
        for step in self.steps:
            sample = step(sample, rng, extra)
        return sample.image, self.targets(sample.boxes, sample.labels)

    @property
    def input_hw(self) -> HW:
        """The (h, w) of the images this pipeline makes."""
        return cast(PaddedRescale, self.steps[-2]).input_dim
