"""The original's metric (SuperGradients 3.7.1 `DetectionMetrics`), its first step: its float32 grids and constants,
and the matching of one image's detections to its targets and crowd boxes at every IoU threshold. The whole
metric and what it does, item by item, is described in sg.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def linspace32(start: float, end: float, steps: int) -> np.ndarray:
    """float32 [steps]: `torch.linspace(start, end, steps)` as the original's grids are built on x86 (AVX2 and
    newer builds of torch, where the compiler fuses the multiply-add): ``step = (end - start) / (steps - 1)`` in
    float32, then ``start + step * i`` for the first half and ``end - step * (steps - 1 - i)`` for the second,
    each rounded once to float32. Some values are one float32 step away from the nearest float32 to ``k / 100``
    (``linspace32(0, 1, 101)[70]`` is 0.69999999 where torch's portable build gives 0.70000005), which decides
    where a recall of exactly 0.7 is sampled."""
    start32, end32 = np.float32(start), np.float32(end)
    step = np.float64((end32 - start32) / np.float32(max(steps - 1, 1)))
    i = np.arange(steps)
    exact = np.where(i < steps // 2, np.float64(start32) + step * i, np.float64(end32) - step * (steps - 1 - i))
    return exact.astype(np.float32)  # the float64 value is exact (24-bit step times a small integer): one rounding


SG_IOU_THRESHOLDS = linspace32(0.5, 0.95, 10)  # IouThreshold.MAP_05_TO_095
SG_RECALL_POINTS = linspace32(0.0, 1.0, 101)  # also the grid of the best-score-threshold search
SG_SCORE_THRESHOLD = 0.1
SG_TOP_K = 100
PRECISION_EPS = float(np.finfo(np.float64).eps)  # added to a float32 tensor: float32(2.2e-16), as the original
F1_EPS = 1e-16
SG_PR_DEFINITION = (
    "the original's (SuperGradients DetectionMetrics): precision, recall and F1 of the detections with confidence "
    ">= score_threshold, each the mean over the classes with targets and the IoU thresholds; "
    "best_score_threshold is the confidence of its highest mean F1"
)


# ---------------------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class ImageMatch:
    """The matching of one image's detections at each IoU threshold.

    matched, ignored: bool [K, T]; scores: float32 [K]; cls: int64 [K]; target_cls: int64 [M] (crowd boxes
    excluded). A detection that is neither matched nor ignored is a false positive.
    """

    matched: np.ndarray
    ignored: np.ndarray
    scores: np.ndarray
    cls: np.ndarray
    target_cls: np.ndarray


def top_k_per_class(conf: np.ndarray, cls: np.ndarray, k: int) -> np.ndarray:
    """bool [K]: the `k` most confident detections of each class (ties: earlier index first), never one of
    confidence 0 (the original ranks by confidence times a class mask and drops zeros)."""
    order = np.lexsort((-conf, cls))  # by class, then by descending confidence; stable
    sorted_cls = cls[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_cls, sorted_cls, side="left")
    keep = np.zeros(len(conf), bool)
    keep[order] = rank < k
    return keep & (conf != 0)


def clip_to_canvas(boxes: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """float32 [K, 4] xyxy boxes clipped to the canvas: x to [0, W], y to [0, H] (a copy)."""
    h, w = canvas_hw
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], np.float32(0), np.float32(w))
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], np.float32(0), np.float32(h))
    return out


def _overlaps32(det: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection over the detection's area), both float32 [K, M] for float32 xyxy det [K, 4] and
    other [M, 4], computed in the original's order of operations (NaN where it divides 0 by 0)."""
    lt = np.maximum(det[:, None, :2], other[None, :, :2])
    rb = np.minimum(det[:, None, 2:], other[None, :, 2:])
    wh = np.clip(rb - lt, np.float32(0), None)
    inter = wh[..., 0] * wh[..., 1]
    det_area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    other_area = (other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (det_area[:, None] + other_area[None, :] - inter)
        ioa = inter / det_area[:, None]
    return iou, ioa


def _greedy_match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """matched bool [K, T] for iou float32 [K, M] (rows in matching order, 0 across classes): at each
    threshold each row takes the untaken column of highest IoU strictly above it (ties: the lower column)."""
    matched = np.zeros((len(iou), len(thresholds)), bool)
    taken = np.zeros((len(thresholds), iou.shape[1]), bool)
    rows = np.arange(len(thresholds))
    for i in np.nonzero((iou > thresholds.min()).any(1))[0]:
        above = (iou[i][None, :] > thresholds[:, None]) & ~taken
        best = np.where(above, iou[i][None, :], -np.inf).argmax(1)
        ok = above[rows, best]
        matched[i, ok] = True
        taken[rows[ok], best[ok]] = True
    return matched


def match_image(
    det: np.ndarray,
    targets: np.ndarray,
    crowd: np.ndarray,
    canvas_hw: tuple[int, int],
    top_k: int,
    thresholds: np.ndarray,
) -> ImageMatch:
    """The original's matching of one image.

    Args:
        det: float32 [K, 6] (x1, y1, x2, y2, conf, cls), canvas pixels, any order.
        targets, crowd: float32 [M, 5] and [N, 5] (x1, y1, x2, y2, cls), canvas pixels.
        canvas_hw: (H, W) of the network input the boxes live in.
        top_k: detections of each class that take part; thresholds: float32 [T] IoU thresholds.
    """
    scores, cls = det[:, 4], det[:, 5].astype(np.int64)
    used = top_k_per_class(scores, cls, top_k)
    matched = np.zeros((len(det), len(thresholds)), bool)
    ignored = np.repeat(~used[:, None], len(thresholds), 1)
    if len(det) and (len(targets) or len(crowd)):
        order = np.nonzero(used)[0]
        order = order[np.argsort(-scores[order], kind="stable")]
        boxes = clip_to_canvas(det[order, :4], canvas_hw)
        if len(targets):
            iou, _ = _overlaps32(boxes, targets[:, :4])
            iou[cls[order][:, None] != targets[None, :, 4].astype(np.int64)] = 0
            matched[order] = _greedy_match(iou, thresholds)
        if len(crowd):
            _, ioa = _overlaps32(boxes, crowd[:, :4])
            ioa[cls[order][:, None] != crowd[None, :, 4].astype(np.int64)] = 0
            best = np.nan_to_num(ioa, nan=0.0).max(1, initial=0.0)
            ignored[order] |= best[:, None] > thresholds[None, :]
    return ImageMatch(matched, ignored, scores, cls, targets[:, 4].astype(np.int64))
