"""The original's own COCO metric (SuperGradients `DetectionMetrics`, as used by its published val2017
numbers), re-implemented from its described definition (facts §6.2), and its preprocessing variant.

The published protocol (`protocol=sg`): the image's longest side is resized to 636 with the size truncated
(`int(W * r)`, `int(H * r)`, not rounded), centre-padded with 114 to 640x640; post-processing keeps scores
> 0.03, at most 1000 candidates before class-aware multi-label NMS at IoU 0.65, and at most 300 detections.

The metric (`SGDetectionMetric`):

- Matching happens in the network-input space (the padded 640x640 image): targets are mapped there by the
  letterbox, detections are the unclipped post-processed boxes.
- Per image, only the `top_k` (100) most confident detections *of each class* take part; the others are
  ignored (neither TP nor FP).
- At each IoU threshold 0.50:0.05:0.95, detections in descending confidence each take the unmatched
  same-class target of highest IoU >= t. An unmatched detection lying on a same-class crowd target
  (intersection over the detection's area >= t) is ignored.
- Per class with targets and per threshold: detections sorted by confidence, cumulative TP/FP, recall =
  TP / targets, precision = TP / (TP + FP), made monotone (running maximum from the right), sampled at 101
  recall points 0, 0.01, ..., 1 with a left-sided search (0 beyond the last recall); AP = the mean.
  mAP = the mean over classes with targets and over thresholds.

Assumptions where the description is silent (stated here so that they can be checked against the original):
the matching order above (confidence first, then IoU) and the crowd overlap measure (intersection over the
detection's area, as COCO). Unlike pycocotools there is no per-image cap of 100 detections and no area
ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yolonas_cli.data.datasets.labels import Labels
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.metrics.matching import IOU_THRESHOLDS, match_image

__all__ = ["SG_POSTPROCESS", "SGDetectionMetric", "SGPostprocess", "SGResult", "sg_letterbox"]


@dataclass(frozen=True)
class SGPostprocess:
    """The post-processing of the published evaluation (facts §6.2, item 6): multi-label, class-aware."""

    conf: float = 0.03  # scores strictly above it
    iou: float = 0.65  # NMS IoU threshold
    pre_nms_top_k: int = 1000
    max_det: int = 300


SG_POSTPROCESS = SGPostprocess()
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def sg_letterbox(orig_hw: tuple[int, int], imgsz: int | tuple[int, int] = 640) -> Letterbox:
    """The original's *val* letterbox: like predict's, but the resized size is truncated, not rounded.

    For a 640x640 input: ``r = min(636 / H, 636 / W)``, resized ``(int(H * r), int(W * r))`` (at least 1),
    centre padding ``top = (640 - H') // 2``, ``left = (640 - W') // 2``. Other input sizes keep the 636/640
    ratio per side, as the engine's letterbox does (the one planner, `Letterbox.for_image`, with truncation).
    """
    return Letterbox.for_image(orig_hw, imgsz, truncate=True)


def top_k_per_class(conf: np.ndarray, cls: np.ndarray, k: int) -> np.ndarray:
    """bool [N]: True for the `k` most confident detections of each class (ties: earlier index first)."""
    keep = np.zeros(len(conf), bool)
    order = np.argsort(-conf, kind="stable")
    for c in np.unique(cls):
        members = order[cls[order] == c]
        keep[members[:k]] = True
    return keep


@dataclass(frozen=True)
class SGResult:
    """mAP over thresholds 0.50:0.95, at 0.50 and at 0.75; `ap` [C, T] per class in `classes` order."""

    map: float
    map50: float
    map75: float
    classes: np.ndarray
    ap: np.ndarray

    def as_dict(self) -> dict[str, float]:
        return {"mAP50-95": self.map, "mAP50": self.map50, "mAP75": self.map75}


class SGDetectionMetric:
    """Accumulates images, then computes the original's mAP (see the module docstring)."""

    def __init__(self, num_classes: int, top_k: int = 100, iou_thresholds: np.ndarray = IOU_THRESHOLDS):
        self.num_classes = num_classes
        self.top_k = top_k
        self.thresholds = np.asarray(iou_thresholds, dtype=np.float64)
        self._scores: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self._tp: list[np.ndarray] = []
        self._ignored: list[np.ndarray] = []
        self.n_targets = np.zeros(num_classes, np.int64)

    def update(self, det: np.ndarray, targets: Labels) -> None:
        """Add one image: det [K, 6] (x1, y1, x2, y2, conf, cls) and targets, both in network-input pixels."""
        det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
        cls = det[:, 5].astype(np.int64)
        used = top_k_per_class(det[:, 4], cls, self.top_k)
        tp = np.zeros((len(det), len(self.thresholds)), bool)
        ignored = np.ones_like(tp)
        tp[used], ignored[used] = match_image(det[used], targets, self.thresholds)
        self._scores.append(det[:, 4])
        self._cls.append(cls)
        self._tp.append(tp)
        self._ignored.append(ignored)
        regular = targets.cls[~targets.crowd]
        np.add.at(self.n_targets, regular[(regular >= 0) & (regular < self.num_classes)], 1)

    def compute(self) -> SGResult:
        """The mAP over the classes that have targets (zeros when none has)."""
        classes = np.nonzero(self.n_targets > 0)[0]
        if not len(classes):
            return SGResult(0.0, 0.0, 0.0, classes, np.zeros((0, len(self.thresholds))))
        scores, cls = np.concatenate(self._scores), np.concatenate(self._cls)
        tp, ignored = np.concatenate(self._tp), np.concatenate(self._ignored)
        ap = np.stack([self._class_ap(scores, tp, ignored, cls == c, int(self.n_targets[c])) for c in classes])
        at = {t: int(np.argmin(np.abs(self.thresholds - t))) for t in (0.5, 0.75)}
        return SGResult(float(ap.mean()), float(ap[:, at[0.5]].mean()), float(ap[:, at[0.75]].mean()), classes, ap)

    def _class_ap(
        self, scores: np.ndarray, tp: np.ndarray, ignored: np.ndarray, sel: np.ndarray, n_targets: int
    ) -> np.ndarray:
        """AP [T] of one class."""
        order = np.argsort(-scores[sel], kind="mergesort")
        tp, ignored = tp[sel][order], ignored[sel][order]
        return np.array([average_precision(tp[~ignored[:, t], t], n_targets) for t in range(len(self.thresholds))])


def average_precision(tp: np.ndarray, n_targets: int, recall_points: np.ndarray = RECALL_POINTS) -> float:
    """AP of one class at one threshold from tp bool [N] of its detections in descending confidence."""
    if len(tp) == 0 or n_targets == 0:
        return 0.0
    tpc = np.cumsum(tp)
    fpc = np.cumsum(~tp)
    recall = tpc / n_targets
    precision = tpc / (tpc + fpc)
    envelope = np.flip(np.maximum.accumulate(np.flip(precision)))
    idx = np.searchsorted(recall, recall_points, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())
