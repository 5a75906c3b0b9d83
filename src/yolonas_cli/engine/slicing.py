"""Sliced (tiled) inference: plan tiles over a large image, move tile detections back, merge across tiles.

Small objects in a large image shrink below what the detector can see when the whole image is resized to the
network input; running the detector on overlapping tiles at full resolution finds them (SAHI: Akyon et al.,
"Slicing Aided Hyper Inference", ICIP 2022). This module holds the pure parts; the engine runs the tiles
(`Engine.run_sliced`). The settings, :class:`SliceConfig`, live in :mod:`.slice_config` (no torch there, for
the argument dataclasses) and are re-exported here.

- Plan (:func:`plan_tiles`): tiles of ``size = (h, w)`` pixels, neighbours overlapping by at least
  ``ceil(overlap * size)`` pixels, the fewest tiles that cover the image; along each axis the tiles start every
  ``size - overlap_px`` pixels from 0 and the last one ends on the border (its overlap with the one before may
  be larger). A tile larger than the image along one axis is cut to the image there (one tile along that axis);
  larger along both axes is a usage error. ``full`` adds the whole image as one more "tile" (for large objects).
- Stream (:func:`iter_tiles`): the tiles one at a time as views into the image, so the tiles of a 20000 x 20000
  image are never all in memory at once (the plan itself is two short lists of offsets).
- Collect (:class:`TileMerger`, :func:`shift_detections`): tile detections ``[K, 6]`` rows
  ``(x1, y1, x2, y2, conf, class)`` in tile pixels are moved to image pixels and kept (24 bytes a box).
- Merge (:func:`merge_detections`): the boxes of all tiles, visited in decreasing score (ties: first added
  first); a visited box that was not taken yet takes every later untaken box that matches it, i.e. whose match
  metric with it (IoU, or IoS: intersection over the smaller area) is strictly above ``match_thresh``, of the
  same class unless ``agnostic``. ``nms`` keeps the taking box as it is (greedy NMS: with IoU, exactly
  :func:`~yolonas_cli.engine.ops.nms` / :func:`~yolonas_cli.engine.ops.batched_nms`); ``nmm`` (greedy
  non-maximum merging, SAHI's default) replaces it by the smallest box enclosing it and what it took, with its
  own score and class. Matching pairs are found blockwise among boxes that overlap along x, so memory stays
  bounded for any count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine.ops import box_ios, box_iou
from yolonas_cli.engine.slice_config import MATCH_METRICS, MERGE_METHODS, MIN_TILE, SliceConfig, tile_size

__all__ = [
    "MATCH_METRICS",
    "MERGE_METHODS",
    "MIN_TILE",
    "SliceConfig",
    "Tile",
    "TileMerger",
    "TilePlan",
    "axis_starts",
    "greedy_owners",
    "iter_tiles",
    "merge_detections",
    "overlap_pixels",
    "plan_tiles",
    "shift_detections",
    "tile_size",
]

_METRIC_FUNCTIONS = {"iou": box_iou, "ios": box_ios}
_ROWS = 128  # boxes per block when looking for matching pairs (balances per-block overhead and wasted pairs)
_COLS = 8192  # at most this many columns per block: a block's metric matrix is at most 128 x 8192 numbers

# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Tile:
    """A window ``[x0, x1) x [y0, y1)`` of the image, in pixels; ``full``: it is the whole image."""

    x0: int
    y0: int
    x1: int
    y1: int
    full: bool = False

    @property
    def hw(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's pixels of ``image [H, W, ...]``: a view, no copy."""
        return image[self.y0 : self.y1, self.x0 : self.x1]


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one image: every ``(ys[i], xs[j])`` start, row by row, then the whole image if ``full``."""

    image_hw: tuple[int, int]
    tile_hw: tuple[int, int]
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    full: bool = False

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs) + int(self.full)

    def __iter__(self) -> Iterator[Tile]:
        (th, tw), (h, w) = self.tile_hw, self.image_hw
        for y in self.ys:
            for x in self.xs:
                yield Tile(x, y, x + tw, y + th)
        if self.full:
            yield Tile(0, 0, w, h, full=True)


def overlap_pixels(size: int, overlap: float) -> int:
    """At least ``overlap * size`` pixels (rounding error of the float product ignored), below ``size``."""
    return min(size - 1, math.ceil(overlap * size - 1e-9))


def axis_starts(length: int, size: int, overlap: int) -> tuple[int, ...]:
    """Starts of the fewest tiles of ``size`` covering ``[0, length)`` with neighbours sharing ``>= overlap`` px.

    Every ``size - overlap`` pixels from 0, the last tile ending at ``length``. ``size >= length``: one tile.
    """
    if size >= length:
        return (0,)
    stride = size - overlap
    count = 1 + math.ceil((length - size) / stride)
    return (*range(0, stride * (count - 1), stride), length - size)


def plan_tiles(image_hw: tuple[int, int], config: SliceConfig) -> TilePlan:
    """The tiles of an image of ``image_hw = (height, width)`` pixels (rules in the module docstring).

    Raises:
        UsageError: the tile is larger than the image along both axes.
    """
    h, w = image_hw
    th, tw = config.size
    if th > h and tw > w:
        raise UsageError(
            f"slice={th},{tw} is larger than the image ({h}x{w}): use a smaller slice, or predict without slice="
        )
    th, tw = min(th, h), min(tw, w)
    ys = axis_starts(h, th, overlap_pixels(th, config.overlap))
    xs = axis_starts(w, tw, overlap_pixels(tw, config.overlap))
    return TilePlan((h, w), (th, tw), ys, xs, config.full)


def iter_tiles(image: np.ndarray, config: SliceConfig) -> Iterator[tuple[Tile, np.ndarray]]:
    """``(tile, pixels)`` of ``image [H, W, C]`` one at a time; the pixels are views into ``image``."""
    for tile in plan_tiles(image.shape[:2], config):
        yield tile, tile.crop(image)


# ----------------------------------------------------------------------------------------------- collect


def shift_detections(dets: Tensor, tile: Tile) -> Tensor:
    """Detections ``[K, 6]`` ``(x1, y1, x2, y2, conf, class)`` in ``tile`` pixels -> image pixels (new tensor)."""
    out = dets.clone()
    out[:, [0, 2]] += tile.x0
    out[:, [1, 3]] += tile.y0
    return out


class TileMerger:
    """Collects the detections of an image's tiles as they stream by, then merges them once.

    ``add(tile, dets)`` per tile (``dets [K, 6]`` in tile pixels), then ``result() -> [M, 6]`` in image pixels.
    """

    def __init__(self, config: SliceConfig) -> None:
        self.config = config
        self._parts: list[Tensor] = []

    def add(self, tile: Tile, dets: Tensor) -> None:
        if dets.ndim != 2 or dets.shape[1] != 6:
            raise ValueError(f"detections must have shape [K, 6], got {tuple(dets.shape)}")
        if len(dets):
            self._parts.append(shift_detections(dets, tile))

    def result(self) -> Tensor:
        """The merged detections of all tiles added, in decreasing confidence (``[0, 6]`` when none)."""
        if not self._parts:
            return torch.zeros((0, 6))
        c = self.config
        return merge_detections(torch.cat(self._parts), c.merge, c.metric, c.match_thresh, c.agnostic)


# ------------------------------------------------------------------------------------------------- merge


def _matching_pairs(boxes: Tensor, labels: Tensor | None, metric: str, threshold: float) -> tuple[Tensor, Tensor]:
    """Every pair ``(i, j)``, ``i != j`` once, of ``boxes [N, 4]`` whose metric is above ``threshold``.

    Only overlapping boxes can match. Boxes are cut into horizontal strips by their top edge, strips at least as
    tall as the tallest box (and holding about :data:`_ROWS` boxes on average, so there are at most
    ``N / _ROWS + 1``): a box meets boxes of its own strip and of the next one only, and each such pair of
    strips is searched by :func:`_pairs_in_band`.
    """
    n = len(boxes)
    top = boxes[:, 1].double()
    span = float(top.max() - top.min())
    tallest = float((boxes[:, 3] - boxes[:, 1]).max().clamp(min=0))
    strip = torch.floor((top - top.min()) / max(tallest, span * _ROWS / n, 1e-9)).long()
    by_strip = torch.sort(strip, stable=True).indices
    strips, counts = torch.unique_consecutive(strip[by_strip], return_counts=True)
    bounds = [0, *torch.cumsum(counts, 0).tolist()]
    found_i, found_j = [], []
    for k, s in enumerate(strips.tolist()):
        here = by_strip[bounds[k] : bounds[k + 1]]
        below = k + 1 < len(strips) and strips[k + 1] == s + 1
        members = by_strip[bounds[k] : bounds[k + 2]] if below else here
        i, j = _pairs_in_band(boxes[members], None if labels is None else labels[members], metric, threshold)
        own = (i < len(here)) | (j < len(here))  # a pair inside the next strip is found with that strip
        found_i.append(members[i[own]])
        found_j.append(members[j[own]])
    return torch.cat(found_i), torch.cat(found_j)


def _pairs_in_band(boxes: Tensor, labels: Tensor | None, metric: str, threshold: float) -> tuple[Tensor, Tensor]:
    """:func:`_matching_pairs` without strips: after sorting by x1, the partners of a block of boxes are a
    contiguous run that ends where x1 reaches the block's largest x2; the metric is computed on that run only,
    in blocks of at most :data:`_ROWS` x :data:`_COLS`."""
    order = torch.sort(boxes[:, 0], stable=True).indices
    sorted_boxes = boxes[order]
    left, right = sorted_boxes[:, 0].contiguous(), sorted_boxes[:, 2]
    sorted_labels = None if labels is None else labels[order]
    compute = _METRIC_FUNCTIONS[metric]
    found_i, found_j = [], []
    n = len(boxes)
    for start in range(0, n, _ROWS):
        stop = min(start + _ROWS, n)
        reach = max(stop, int(torch.searchsorted(left, right[start:stop].max().reshape(1)).item()))
        rows = torch.arange(start, stop)[:, None]
        for col in range(start, reach, _COLS):
            col_stop = min(col + _COLS, reach)
            hit = compute(sorted_boxes[start:stop], sorted_boxes[col:col_stop]).double() > threshold
            hit &= torch.arange(col, col_stop)[None, :] > rows
            if sorted_labels is not None:
                hit &= sorted_labels[start:stop, None] == sorted_labels[None, col:col_stop]
            r, c = hit.nonzero(as_tuple=True)
            found_i.append(order[r + start])
            found_j.append(order[c + col])
    empty = torch.zeros(0, dtype=torch.long)
    return torch.cat(found_i) if found_i else empty, torch.cat(found_j) if found_j else empty


def greedy_owners(boxes: Tensor, scores: Tensor, labels: Tensor | None, metric: str, threshold: float) -> Tensor:
    """For each box, the box that takes it in the greedy visit (itself when it is kept): ``LongTensor [N]``.

    Boxes are visited in decreasing score (stable); see the module docstring. ``labels`` None: class-agnostic.
    """
    n = len(boxes)
    order = torch.sort(scores, descending=True, stable=True).indices
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    i, j = _matching_pairs(boxes, labels, metric, threshold)
    first, second = torch.minimum(rank[i], rank[j]).numpy(), torch.maximum(rank[i], rank[j]).numpy()
    by_first = np.lexsort((second, first))
    first, second = first[by_first], second[by_first]
    starts = np.searchsorted(first, np.arange(n + 1))
    taken = np.zeros(n, dtype=bool)
    owner = np.arange(n)
    for r in np.unique(first).tolist():  # ranks with later matches, best first
        if taken[r]:
            continue
        partners = second[starts[r] : starts[r + 1]]
        partners = partners[~taken[partners]]
        taken[partners] = True
        owner[partners] = r
    return order[torch.from_numpy(owner)][rank]  # owner of box i: rank space -> index space


def merge_detections(
    dets: Tensor, merge: str = "nmm", metric: str = "ios", match_thresh: float = 0.5, agnostic: bool = False
) -> Tensor:
    """Merge overlapping detections of several tiles (rules in the module docstring).

    Args:
        dets: ``[N, 6]`` rows ``(x1, y1, x2, y2, conf, class)`` in image pixels.
        merge: ``nms`` or ``nmm``.
        metric: ``iou`` or ``ios``.
        match_thresh: boxes match when the metric is strictly above this.
        agnostic: match boxes of different classes too.

    Returns:
        ``[M, 6]`` rows, same dtype, in decreasing confidence (ties: earlier rows first).
    """
    if dets.ndim != 2 or dets.shape[1] != 6:
        raise ValueError(f"detections must have shape [N, 6], got {tuple(dets.shape)}")
    if len(dets) == 0:
        return dets.clone()
    owner = greedy_owners(dets[:, :4], dets[:, 4], None if agnostic else dets[:, 5], metric, match_thresh)
    kept = torch.nonzero(owner == torch.arange(len(dets))).flatten()
    kept = kept[torch.sort(dets[kept, 4], descending=True, stable=True).indices]
    out = dets[kept].clone()
    if merge == "nmm":
        out[:, :4] = _enclosing_boxes(dets[:, :4], owner)[kept]
    return out


def _enclosing_boxes(boxes: Tensor, owner: Tensor) -> Tensor:
    """``[N, 4]``: for each owner, the smallest box enclosing it and the boxes it took (rows of others unused)."""
    low = torch.full((len(boxes), 2), math.inf, dtype=boxes.dtype)
    high = torch.full((len(boxes), 2), -math.inf, dtype=boxes.dtype)
    index = owner[:, None].expand(-1, 2)
    low = low.scatter_reduce(0, index, boxes[:, :2], reduce="amin")
    high = high.scatter_reduce(0, index, boxes[:, 2:], reduce="amax")
    return torch.cat([low, high], dim=1)
