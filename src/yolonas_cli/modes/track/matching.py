"""Association of tracks with detections: IoU cost, score fusion and thresholded optimal assignment.

The assignment is the reference trackers' ``lapjv(cost, extend_cost=True, cost_limit=thresh)``: the matching
that minimises the summed cost when leaving a track or a detection unmatched costs ``thresh / 2`` each, i.e.
it minimises ``sum(cost - thresh)`` over matched pairs, and a pair costing more than ``thresh`` is never
matched. It is solved with scipy's ``linear_sum_assignment`` on ``min(cost - thresh, 0)``, the same optimum
on the rectangular matrix (a pair whose term is 0 is equivalent to no match, and is dropped).
"""

from __future__ import annotations

import numpy as np
import torch

from yolonas_cli.core.errors import MissingExtraError
from yolonas_cli.core.install import pip_extra
from yolonas_cli.engine.ops import box_iou

__all__ = ["fuse_score", "iou_cost", "linear_assignment"]


def iou_cost(track_boxes: np.ndarray, det_boxes: np.ndarray) -> np.ndarray:
    """``1 - IoU`` of tracks ``[T, 4]`` and detections ``[D, 4]`` (xyxy) -> ``float64 [T, D]``.

    A pair of degenerate boxes (IoU NaN) costs 1, as two boxes that do not overlap.
    """
    if len(track_boxes) == 0 or len(det_boxes) == 0:
        return np.ones((len(track_boxes), len(det_boxes)), dtype=np.float64)
    iou = box_iou(torch.from_numpy(np.asarray(track_boxes, np.float64)), torch.from_numpy(np.asarray(det_boxes)))
    cost = 1.0 - iou.numpy()
    cost[np.isnan(cost)] = 1.0
    return cost


def fuse_score(cost: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
    """ByteTrack's score fusion: ``1 - IoU * score`` per pair, from ``cost = 1 - IoU [T, D]`` and scores ``[D]``."""
    return 1.0 - (1.0 - cost) * np.asarray(det_scores, dtype=np.float64)[None, :]


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The thresholded optimal matching of rows (tracks) and columns (detections).

    Args:
        cost: ``[T, D]`` costs.
        thresh: pairs costing more than this are never matched.

    Returns:
        ``(matches [K, 2] int64 (row, column) in increasing row order, unmatched rows [T - K],
        unmatched columns [D - K])``.
    """
    rows_n, cols_n = cost.shape
    matches = np.empty((0, 2), dtype=np.int64)
    if rows_n and cols_n:
        gain = np.minimum(cost - thresh, 0.0)
        rows, cols = _linear_sum_assignment(gain)
        good = cost[rows, cols] <= thresh
        matches = np.stack([rows[good], cols[good]], axis=1).astype(np.int64)
    return matches, _others(rows_n, matches[:, 0]), _others(cols_n, matches[:, 1])


def _others(n: int, taken: np.ndarray) -> np.ndarray:
    """``[0, n)`` without ``taken``, increasing."""
    free = np.ones(n, dtype=bool)
    free[taken] = False
    return np.flatnonzero(free)


def _linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise MissingExtraError(f"tracking needs scipy: {pip_extra('track')}") from None
    return linear_sum_assignment(cost)
