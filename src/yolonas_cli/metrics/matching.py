"""Matching detections to boxes: IoU and IoA of xyxy boxes (numpy, float64), COCO-style matching of one
image's detections to its ground truth, and the one greedy one-to-one matcher of two detection sets.

Detections are float rows (x1, y1, x2, y2, conf, cls) in pixels; ground truth is a `data.datasets.Labels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yolonas_cli.data.datasets.labels import Labels

# pycocotools' IoU thresholds, built the same way so that comparisons with them agree bit for bit
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas [N, M] of xyxy boxes a [N, 4] and b [M, 4] (float64)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of xyxy boxes a [N, 4] and b [M, 4], float64 (0 where the union is 0)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_ioa_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the area of `a`: [N, M] for xyxy a [N, 4], b [M, 4] (COCO's crowd overlap)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    area = _area(a)[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def match_image(det: np.ndarray, gt: Labels, thresholds: np.ndarray = IOU_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections to its ground truth at each IoU threshold, COCO style.

    Args:
        det: [K, 6] (x1, y1, x2, y2, conf, cls), any order.
        gt: the image's labels (crowd rows are ignore regions, not targets).
        thresholds: [T] IoU thresholds; a match needs IoU >= t.

    Returns:
        tp: bool [K, T], True where the detection matched a target at threshold t.
        ignored: bool [K, T], True where an unmatched detection lies on a same-class crowd box
        (intersection over the detection's area >= t); such detections count neither as TP nor as FP.
    """
    k, t = len(det), len(thresholds)
    tp, ignored = np.zeros((k, t), bool), np.zeros((k, t), bool)
    if k == 0 or len(gt) == 0:
        return tp, ignored
    order = np.argsort(-det[:, 4], kind="stable")
    boxes, cls = det[order, :4].astype(np.float64), det[order, 5].astype(np.int64)
    regular, crowd = gt.select(~gt.crowd), gt.select(gt.crowd)
    tp_sorted = _greedy_match(boxes, cls, regular, thresholds)
    if len(crowd):
        ioa = box_ioa_np(boxes, crowd.boxes) * (cls[:, None] == crowd.cls[None, :])
        ignored[order] = ~tp_sorted & (ioa.max(1)[:, None] >= thresholds[None, :])
    tp[order] = tp_sorted
    return tp, ignored


def _greedy_match(boxes: np.ndarray, cls: np.ndarray, targets: Labels, thresholds: np.ndarray) -> np.ndarray:
    """tp bool [K, T] for detections already in descending confidence (boxes [K, 4], cls [K])."""
    tp = np.zeros((len(boxes), len(thresholds)), bool)
    if len(targets) == 0:
        return tp
    iou = box_iou_np(boxes, targets.boxes) * (cls[:, None] == targets.cls[None, :])
    taken = np.zeros((len(thresholds), len(targets)), bool)
    rows = np.arange(len(thresholds))
    for i in np.nonzero(iou.max(1) >= thresholds.min())[0]:
        cand = np.where((iou[i][None, :] >= thresholds[:, None]) & ~taken, iou[i][None, :], -1.0)
        best = cand.argmax(1)
        ok = cand[rows, best] > 0
        tp[i, ok] = True
        taken[rows[ok], best[ok]] = True
    return tp


def match_pairs(reference: np.ndarray, other: np.ndarray, min_iou: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of two detection sets of one image: each `reference` row, in decreasing
    confidence (ties: earlier row first), takes the unmatched `other` row of the same class with the highest
    IoU, when that IoU >= `min_iou`.

    Args:
        reference, other: [K, 6] and [M, 6] rows (x1, y1, x2, y2, conf, cls).

    Returns:
        (reference row, other row, IoU) of every match, in matching order.
    """
    if not len(reference) or not len(other):
        return []
    iou = box_iou_np(reference[:, :4], other[:, :4]) * (reference[:, None, 5] == other[None, :, 5])
    free = np.ones(len(other), bool)
    pairs = []
    for r in np.argsort(-reference[:, 4], kind="stable").tolist():
        candidates = np.where(free, iou[r], -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= min_iou:
            free[best] = False
            pairs.append((r, best, float(candidates[best])))
    return pairs


def count_matched(reference: Sequence[np.ndarray], other: Sequence[np.ndarray], min_iou: float) -> int:
    """How many `reference` detections `match_pairs` matches, over images (sequences of [K, 6] arrays)."""
    return sum(len(match_pairs(r, o, min_iou)) for r, o in zip(reference, other))
