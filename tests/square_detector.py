"""A perfect detector of white squares, behind the engine's `Backend` interface, for tests of what the engine
does around the network (tiles, batching, mapping back, merging) where a neural network's answers would be
too vague to count objects by.

On each letterboxed input [3, H, W] (RGB in [0, 1]) it finds the connected regions of pixels brighter than
0.9 in every channel and reports each region's bounding box in input pixels (edges on the pixel grid), class
0, score 0.3 + 0.6 * min(1, area / 10000 px): a square cut by a tile border is a smaller region than the same
square seen whole, so it scores lower.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from yolonas_cli.engine.engine import Engine, EngineSettings

WHITE = 0.9  # input value above which a pixel belongs to a square
NUM_CLASSES = 2


class SquareDetector:
    """`Backend` (engine.backend) that detects white squares exactly; see the module docstring."""

    name = "squares"
    device = torch.device("cpu")
    fixed_input = None
    graph_nms = None

    def __init__(self) -> None:
        self.calls = 0
        self.largest_batch = 0

    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        self.largest_batch = max(self.largest_batch, len(images))
        found = [_regions(image) for image in images]
        count = max(1, max(len(boxes) for boxes, _ in found))
        boxes = torch.zeros((len(images), count, 4))
        scores = torch.zeros((len(images), count, NUM_CLASSES))
        for i, (xyxy, score) in enumerate(found):
            boxes[i, : len(xyxy)] = torch.from_numpy(xyxy)
            scores[i, : len(score), 0] = torch.from_numpy(score)
        return boxes, scores

    def synchronize(self) -> None:
        pass


def _regions(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [K, 4] xyxy float32, scores [K] float32) of the white regions of one input [3, H, W]."""
    mask = (image.min(axis=0) > WHITE).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    stats = stats[1:count]  # label 0 is the background
    x, y, w, h, area = (stats[:, k].astype(np.float32) for k in range(5))
    boxes = np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)
    return boxes, (0.3 + 0.6 * np.minimum(1.0, area / 10000.0)).astype(np.float32)


def square_engine(settings: EngineSettings) -> Engine:
    """The shared engine running the square detector."""
    return Engine(SquareDetector(), {0: "square", 1: "other"}, settings)


def draw_squares(image: np.ndarray, rng: np.random.Generator, count: int, sizes: tuple[int, int]) -> np.ndarray:
    """Paint up to `count` white squares with sides in `sizes` (pixels) on `image` [H, W, 3] (in place), at least
    8 px apart; returns their boxes [K, 4] (x1, y1, x2, y2: pixel edges)."""
    h, w = image.shape[:2]
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(20 * count):  # bounded rejection sampling
        if len(placed) == count:
            break
        side = int(rng.integers(sizes[0], sizes[1] + 1))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        if all(x > b[2] + 8 or x + side < b[0] - 8 or y > b[3] + 8 or y + side < b[1] - 8 for b in placed):
            placed.append((x, y, x + side, y + side))
            image[y : y + side, x : x + side] = 255
    return np.array(placed, dtype=np.float64).reshape(-1, 4)
