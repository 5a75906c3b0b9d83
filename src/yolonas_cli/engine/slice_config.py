"""The settings of sliced inference (`SliceConfig`, one field per ``slice*`` argument) and the tile size check.

Kept apart from :mod:`~yolonas_cli.engine.slicing` (which needs numpy and torch) so that the argument
dataclasses, which the command line imports before anything heavy, can use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from yolonas_cli.core.errors import UsageError

__all__ = ["MATCH_METRICS", "MERGE_METHODS", "MIN_TILE", "SliceConfig", "tile_size"]

MIN_TILE = 32  # a tile must be larger than this many pixels along each axis
MERGE_METHODS = ("nms", "nmm")
MATCH_METRICS = ("iou", "ios")

SizeLike = Union[int, tuple[int, int], list[int]]


@dataclass(frozen=True)
class SliceConfig:
    """How to slice and merge; each field is one ``slice*`` argument of predict and val."""

    size: tuple[int, int]  # tile (height, width) in pixels; slice=640 -> (640, 640); slice=480,640 -> (480, 640)
    overlap: float = 0.2  # slice_overlap: fraction of the tile size shared with the neighbour, in [0, 1)
    full: bool = False  # slice_full: also run the whole image
    merge: str = "nmm"  # slice_merge: nms (keep the best box) or nmm (merge into the enclosing box)
    metric: str = "ios"  # match metric: ios (intersection over the smaller box) or iou
    match_thresh: float = 0.5  # boxes match when the metric is above this
    agnostic: bool = False  # match boxes of different classes too

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tile_size(self.size))
        if not (_is_number(self.overlap) and 0 <= self.overlap < 1):
            raise UsageError(f"slice_overlap={self.overlap!r} must be a number in [0, 1), e.g. slice_overlap=0.2")
        if self.merge not in MERGE_METHODS:
            raise UsageError(f"slice_merge={self.merge!r} is not one of {', '.join(MERGE_METHODS)}")
        if self.metric not in MATCH_METRICS:
            raise UsageError(f"slice_metric={self.metric!r} is not one of {', '.join(MATCH_METRICS)}")
        if not (_is_number(self.match_thresh) and 0 <= self.match_thresh <= 1):
            raise UsageError(f"slice_thresh={self.match_thresh!r} must be a number in [0, 1]")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tile_size(size: SizeLike) -> tuple[int, int]:
    """``slice=N`` or ``(h, w)`` -> ``(h, w)``; a usage error unless whole numbers above :data:`MIN_TILE`."""
    pair = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise UsageError(f"slice={size!r} must be a tile size in pixels, e.g. slice=640 or slice=480,640")
    if min(pair) <= MIN_TILE:
        raise UsageError(f"slice={size!r} is too small: tiles must be larger than {MIN_TILE} px, e.g. slice=640")
    return int(pair[0]), int(pair[1])
