"""The original's own detection metric (SuperGradients 3.7.1 `DetectionMetrics`, the one behind Deci's published
val2017 numbers), reproduced to float32 rounding, and the preprocessing and post-processing of its published
evaluation (`val protocol=sg`).

The published protocol: the image's longest side is resized to 636 with the size truncated (`int(W * r)`,
`int(H * r)`, not rounded), centre-padded with 114 to 640x640; post-processing keeps scores > 0.03, at most 1000
candidates before class-aware multi-label NMS at IoU 0.65, and at most 300 detections.

What the original's metric does (read from its code; every item moves the numbers, and the fixture
tests/fixtures/sg_metric holds the original's own output on data that exercises each one):

- Everything happens in the network-input space (the padded canvas, 640x640): targets are mapped there by the
  letterbox; detections are the post-processed boxes, which the metric itself clips to the canvas (x to
  0..W, y to 0..H) before matching, but only in images that have at least one target or crowd box.
- Per image, only the `top_k` (100) most confident detections *of each class* take part (a detection with
  confidence 0 never does); the others stay in the lists, ignored (neither TP nor FP).
- IoU (intersection / (area_a + area_b - intersection), no epsilon) and the IoU thresholds
  (`torch.linspace(0.5, 0.95, 10)`) are float32, and a match needs IoU strictly greater than the threshold.
  At each threshold, the detections of a class in descending confidence each take the unmatched target of that
  class with the highest IoU above it (ties: the lower target index).
- A detection whose intersection with a same-class crowd box, over the detection's own area, is strictly
  greater than the threshold is ignored, unless it matched a target (then it is a TP).
- Per class with targets (crowd boxes are not targets) and per threshold, over all images: detections sorted by
  descending confidence, float32 cumulative TP and FP (ignored ones add to neither but keep their place),
  recall = TP / targets, precision = TP / (TP + FP + 2.2e-16), made monotone (running maximum from the right).
  AP samples that precision at the 101 recall points `torch.linspace(0, 1, 101)` (float32), each at the first
  rank whose recall reaches it (0 beyond the last recall), and averages them. Because recall and the grid are
  float32, a recall landing exactly on a grid step (classes with 10, 20, 50 targets) picks the precision a
  float32 comparison picks, not the one a float64 comparison would.
- mAP = the mean over classes with targets and thresholds; mAP50 and mAP75 the mean of one threshold's column.
- Its own precision, recall and F1: the monotone precision and the recall at the last detection with
  confidence >= `score_threshold` (0.1; both 0 when there is none), per class and threshold; F1 =
  2PR / (P + R + 1e-16); each reported as the mean over classes and thresholds. Its best score threshold: of
  the 101 confidences `linspace(0, 1, 101)`, the one whose F1 (the same definition, averaged over thresholds,
  then over classes) is highest (the first on ties).

Unlike pycocotools there is no per-image cap of 100 detections (only the per-class `top_k`) and no area ranges.
Ties of confidence within a class are broken by input order here; the original's unstable sort leaves them
unspecified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.metrics.sg_image import (
    F1_EPS,
    PRECISION_EPS,
    SG_IOU_THRESHOLDS,
    SG_PR_DEFINITION,
    SG_RECALL_POINTS,
    SG_SCORE_THRESHOLD,
    SG_TOP_K,
    ImageMatch,
    linspace32,
    match_image,
)

__all__ = [
    "SG_IOU_THRESHOLDS",
    "SG_POSTPROCESS",
    "SG_PR_DEFINITION",
    "SG_RECALL_POINTS",
    "SGDetectionMetric",
    "SGPostprocess",
    "SGResult",
    "linspace32",
    "sg_evaluate",
    "sg_letterbox",
]


# ---------------------------------------------------------------------------------------- the published pipeline


@dataclass(frozen=True)
class SGPostprocess:
    """The post-processing of the published evaluation (facts §6.2, item 6): multi-label, class-aware."""

    conf: float = 0.03  # scores strictly above it
    iou: float = 0.65  # NMS IoU threshold
    pre_nms_top_k: int = 1000
    max_det: int = 300


SG_POSTPROCESS = SGPostprocess()


def sg_letterbox(orig_hw: tuple[int, int], imgsz: int | tuple[int, int] = 640) -> Letterbox:
    """The original's *val* letterbox: like predict's, but the resized size is truncated, not rounded.

    For a 640x640 input: ``r = min(636 / H, 636 / W)``, resized ``(int(H * r), int(W * r))`` (at least 1),
    centre padding ``top = (640 - H') // 2``, ``left = (640 - W') // 2``. Other input sizes keep the 636/640
    ratio per side, as the engine's letterbox does (the one planner, `Letterbox.for_image`, with truncation).
    """
    return Letterbox.for_image(orig_hw, imgsz, truncate=True)


# ---------------------------------------------------------------------------------------- one class


@dataclass(frozen=True)
class ClassStats:
    """One class: ap, precision, recall float32 [T] (precision and recall at the score threshold) and
    f1_by_score float32 [S] (F1 at each confidence of the score grid, mean over thresholds)."""

    ap: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    f1_by_score: torch.Tensor


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    return 2 * recall * precision / (recall + precision + F1_EPS)


def class_stats(
    matched: np.ndarray, ignored: np.ndarray, scores: np.ndarray, n_targets: int, score_threshold: float
) -> ClassStats:
    """The original's per-class numbers from its detections' matched, ignored bool [N, T] and scores float32 [N]
    (all images, any order)."""
    t = matched.shape[1]
    if not len(scores):
        zeros = torch.zeros(t)
        return ClassStats(zeros, zeros, zeros, torch.zeros(len(SG_RECALL_POINTS)))
    order = np.argsort(-scores, kind="stable")
    tp = torch.from_numpy(matched[order])
    fp = ~tp & ~torch.from_numpy(ignored[order])
    neg_scores = torch.from_numpy(-scores[order])
    cum_tp = torch.cumsum(tp, 0, dtype=torch.float32)
    recall = cum_tp / n_targets
    precision = cum_tp / (cum_tp + torch.cumsum(fp, 0, dtype=torch.float32) + PRECISION_EPS)
    precision = precision.flip(0).cummax(0).values.flip(0)  # [N, T], non-increasing
    at = int(torch.searchsorted(neg_scores, -score_threshold, right=True))  # confidences >= it (in float32)
    p_at, r_at = (precision[at - 1], recall[at - 1]) if at else (torch.zeros(t), torch.zeros(t))
    return ClassStats(_average_precision(precision, recall), p_at, r_at, _f1_by_score(precision, recall, neg_scores))


def _average_precision(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    """AP float32 [T]: the precision [N, T] sampled at the first rank whose recall [N, T] reaches each recall
    point (0 beyond the last), averaged over the 101 points."""
    points = torch.from_numpy(SG_RECALL_POINTS).expand(recall.shape[1], -1)
    rank = torch.searchsorted(recall.T.contiguous(), points.contiguous(), right=False)  # [T, 101]
    padded = torch.cat([precision, torch.zeros(1, precision.shape[1])]).T  # [T, N + 1]
    return torch.gather(padded, 1, rank).mean(1)


def _f1_by_score(precision: torch.Tensor, recall: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """float32 [S]: at each confidence c of the grid, the F1 of the detections with confidence >= c (0 when
    none), averaged over thresholds."""
    count = torch.searchsorted(neg_scores, -torch.from_numpy(SG_RECALL_POINTS), right=True)
    zero = torch.zeros(1, precision.shape[1])
    p = torch.cat([zero, precision])[count]
    r = torch.cat([zero, recall])[count]
    return _f1(p, r).mean(1)


# ---------------------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class SGResult:
    """The original's numbers for a set of images.

    map: mAP over `iou_thresholds`; map50, map75: mAP at IoU 0.5 and 0.75 (None when not among the thresholds);
    precision, recall, f1: its own P, R and F1 at `score_threshold` (mean over classes and thresholds);
    best_score_threshold: the confidence of its best mean F1; classes: int64 [C] the classes with targets, in
    ascending order; ap, class_precision, class_recall: float [C, T] per class and threshold; num_classes: the
    classes there are. Means are float32, as the original's.
    """

    map: float
    map50: float | None
    map75: float | None
    precision: float
    recall: float
    f1: float
    best_score_threshold: float
    classes: np.ndarray
    ap: np.ndarray
    class_precision: np.ndarray
    class_recall: np.ndarray
    iou_thresholds: np.ndarray
    score_threshold: float
    num_classes: int

    @property
    def maps(self) -> np.ndarray:
        """float [num_classes] AP averaged over the thresholds per class, 0 for classes without targets."""
        out = np.zeros(self.num_classes)
        out[self.classes] = self.ap.mean(1) if len(self.classes) else 0.0
        return out

    def as_dict(self) -> dict[str, Any]:
        """The numbers as metrics.json stores them (with the definition of P, R and F1)."""
        return {
            "mAP50-95": self.map,
            "mAP50": self.map50,
            "mAP75": self.map75,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "score_threshold": self.score_threshold,
            "best_score_threshold": self.best_score_threshold,
            "pr_definition": SG_PR_DEFINITION,
        }


def _column_mean(ap: torch.Tensor, thresholds: np.ndarray, iou: float) -> float | None:
    hit = np.nonzero(np.isclose(thresholds, iou, rtol=0, atol=1e-6))[0]
    return float(ap[:, int(hit[0])].mean()) if len(hit) else None


def summarize(
    stats: list[ClassStats], classes: np.ndarray, thresholds: np.ndarray, score_threshold: float, num_classes: int
) -> SGResult:
    """The result from the per-class numbers of `classes` (zeros when no class has targets; the original
    gives NaN there)."""
    t = len(thresholds)
    if not stats:
        empty = np.zeros((0, t))
        return SGResult(
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, classes, empty, empty, empty, thresholds, score_threshold, num_classes
        )
    ap = torch.stack([s.ap for s in stats])
    precision, recall = torch.stack([s.precision for s in stats]), torch.stack([s.recall for s in stats])
    f1_by_score = torch.stack([s.f1_by_score for s in stats]).mean(0)
    best = float(SG_RECALL_POINTS[int(torch.argmax(f1_by_score))])
    return SGResult(
        float(ap.mean()),
        _column_mean(ap, thresholds, 0.5),
        _column_mean(ap, thresholds, 0.75),
        float(precision.mean()),
        float(recall.mean()),
        float(_f1(precision, recall).mean()),
        best,
        classes,
        ap.numpy().astype(np.float64),
        precision.numpy().astype(np.float64),
        recall.numpy().astype(np.float64),
        thresholds,
        score_threshold,
        num_classes,
    )


# ---------------------------------------------------------------------------------------- accumulation


def _rows(array: Any, width: int, what: str, num_classes: int) -> np.ndarray:
    """float32 [N, width] from `array`, or a UsageError naming `what` and the expected layout."""
    layout = "(x1, y1, x2, y2, conf, cls)" if width == 6 else "(x1, y1, x2, y2, cls)"
    rows = np.asarray(array, dtype=np.float32)
    if rows.size == 0:
        return np.zeros((0, width), np.float32)
    if rows.ndim != 2 or rows.shape[1] != width:
        raise UsageError(f"{what} must be an array [N, {width}] of rows {layout}; got shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise UsageError(f"{what} has a non-finite value (NaN or inf): give finite pixel coordinates")
    cls = rows[:, -1]
    if ((cls != np.round(cls)) | (cls < 0) | (cls >= num_classes)).any():
        raise UsageError(
            f"{what} has a class id outside 0..{num_classes - 1} or not an integer: the last column is the class id"
        )
    if width == 6 and (rows[:, 4] < 0).any():
        raise UsageError(f"{what} has a negative confidence: column 5 is the confidence in [0, 1]")
    return rows


class SGDetectionMetric:
    """Accumulates images (`update`), then computes the original's numbers (`compute`); see the module
    docstring for the definition."""

    def __init__(
        self,
        num_classes: int,
        canvas_hw: tuple[int, int] = (640, 640),
        top_k: int = SG_TOP_K,
        iou_thresholds: Any = SG_IOU_THRESHOLDS,
        score_threshold: float = SG_SCORE_THRESHOLD,
    ):
        thresholds = np.asarray(iou_thresholds, dtype=np.float32).reshape(-1)
        if num_classes < 1 or top_k < 1 or not len(thresholds) or not (np.diff(thresholds) > 0).all():
            raise UsageError(
                "the metric needs num_classes >= 1, top_k >= 1 and increasing IoU thresholds; got "
                f"num_classes={num_classes}, top_k={top_k}, iou_thresholds={thresholds.tolist()}"
            )
        self.num_classes, self.canvas_hw, self.top_k = num_classes, canvas_hw, top_k
        self.thresholds, self.score_threshold = thresholds, score_threshold
        self.images: list[ImageMatch] = []

    def update(
        self, detections: Any, targets: Any, crowd: Any = None, canvas_hw: tuple[int, int] | None = None
    ) -> None:
        """Add one image, everything in network-input (canvas) pixels, as float32.

        Args:
            detections: [K, 6] rows (x1, y1, x2, y2, conf, cls).
            targets: [M, 5] rows (x1, y1, x2, y2, cls).
            crowd: [N, 5] crowd boxes (COCO `iscrowd`), rows as targets; None: none.
            canvas_hw: (H, W) of this image's network input, if not the metric's `canvas_hw`.
        """
        n = len(self.images)
        det = _rows(detections, 6, f"the detections of image {n}", self.num_classes)
        tgt = _rows(targets, 5, f"the targets of image {n}", self.num_classes)
        crw = _rows(np.zeros((0, 5)) if crowd is None else crowd, 5, f"the crowd boxes of image {n}", self.num_classes)
        self.images.append(match_image(det, tgt, crw, canvas_hw or self.canvas_hw, self.top_k, self.thresholds))

    def compute(self) -> SGResult:
        """The original's numbers over every image added so far."""
        if not self.images:
            return summarize([], np.zeros(0, np.int64), self.thresholds, self.score_threshold, self.num_classes)
        images = self.images
        matched, ignored = np.concatenate([m.matched for m in images]), np.concatenate([m.ignored for m in images])
        scores, cls = np.concatenate([m.scores for m in images]), np.concatenate([m.cls for m in images])
        target_cls = np.concatenate([m.target_cls for m in images])
        classes = np.unique(target_cls).astype(np.int64)
        stats = [
            class_stats(
                matched[cls == c],
                ignored[cls == c],
                scores[cls == c],
                int((target_cls == c).sum()),
                self.score_threshold,
            )
            for c in classes
        ]
        return summarize(stats, classes, self.thresholds, self.score_threshold, self.num_classes)


def sg_evaluate(
    detections: Sequence[Any],
    targets: Sequence[Any],
    crowd: Sequence[Any] | None = None,
    *,
    num_classes: int,
    canvas_hw: tuple[int, int] = (640, 640),
    top_k: int = SG_TOP_K,
    iou_thresholds: Any = SG_IOU_THRESHOLDS,
    score_threshold: float = SG_SCORE_THRESHOLD,
) -> SGResult:
    """Score detections the way Deci's published YOLO-NAS numbers were scored (SuperGradients 3.7.1
    `DetectionMetrics`; see the module docstring).

    Args:
        detections: per image, float [K, 6] rows (x1, y1, x2, y2, conf, cls) in network-input pixels.
        targets: per image, float [M, 5] rows (x1, y1, x2, y2, cls), the same pixels.
        crowd: per image, crowd boxes [N, 5] like targets (ignore regions), or None.
        num_classes: class ids are 0..num_classes-1.
        canvas_hw: (H, W) of the network input (detections are clipped to it in images with targets).
        top_k: detections of each class per image that take part (the original's `top_k_predictions`).
        iou_thresholds: increasing IoU thresholds (default the original's 0.50:0.05:0.95 in float32; pass
            [0.5] for its `DetectionMetrics_050`).
        score_threshold: the confidence at which its precision, recall and F1 are read.
    """
    crowd_list: Sequence[Any] = [None] * len(targets) if crowd is None else crowd
    if not len(detections) == len(targets) == len(crowd_list):
        raise UsageError(
            f"detections, targets and crowd must list the same images; got {len(detections)}, "
            f"{len(targets)} and {len(crowd_list)}"
        )
    metric = SGDetectionMetric(num_classes, canvas_hw, top_k, iou_thresholds, score_threshold)
    for det, tgt, crw in zip(detections, targets, crowd_list):
        metric.update(det, tgt, crw)
    return metric.compute()
