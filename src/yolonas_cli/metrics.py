"""Detection metrics for `yolo-nas val`: COCO mAP with pycocotools, precision/recall at the best-F1
confidence, the confusion matrix, their plots (OpenCV only), and the returned metrics objects.

Box format everywhere: xyxy in original-image pixels; detections are float [K, 6] rows
(x1, y1, x2, y2, conf, cls); ground truth is a `datasets.Labels`.

- mAP50-95, mAP50, mAP75 and AP small/medium/large are pycocotools' `COCOeval` numbers (bbox, maxDets 100,
  101 recall points, crowd handling), per class from its precision array. These are the printed numbers.
- Precision and recall per class come from our own COCO-style matching at IoU 0.5 (detections in
  descending confidence each take the unmatched same-class box of highest IoU; an unmatched detection over a
  same-class crowd box, by intersection over its own area, is ignored), read off the P(conf) and R(conf)
  curves at the confidence that maximises the mean F1 over classes (the curve smoothed by a 101-point box
  filter), the way Ultralytics reports P and R.
- The confusion matrix counts detections with conf >= 0.25 matched to non-crowd boxes at IoU > 0.45
  (class-agnostic, greedy by IoU); rows are predicted classes, columns true classes, the last row/column is
  background.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolonas_cli.datasets import Labels
from yolonas_cli.sinks import atomic_imwrite

# pycocotools' IoU thresholds, built the same way so that comparisons with them agree bit for bit
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_STAT_NAMES = ("mAP50-95", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
                   "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
CONF_GRID = np.linspace(0, 1, 1000)
PR_DEFINITION = ("Ultralytics-style: precision and recall at IoU 0.5 at the confidence of the best smoothed mean F1 "
                 "(best_f1_conf), mean over the classes with targets")
_EPS = 1e-16


# ---------------------------------------------------------------------------------------- box maths


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


# ---------------------------------------------------------------------------------------- matching


def match_image(det: np.ndarray, gt: Labels, thresholds: np.ndarray = IOU_THRESHOLDS
                ) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------------------- P, R, F1


@dataclass
class PRCurves:
    """Per-class curves at IoU 0.5 for the classes with targets (`classes`, ascending).

    p, r, f1: [C, 1000] precision, recall and F1 against the confidence grid `CONF_GRID`;
    pr: [C, 1000] the precision envelope against recall `CONF_GRID` (for the PR plot);
    best: index into the grid of the confidence with the highest smoothed mean F1.
    """

    classes: np.ndarray
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    pr: np.ndarray
    best: int

    @property
    def precision(self) -> np.ndarray:
        """[C] precision of each class at the best-F1 confidence."""
        return self.p[:, self.best] if len(self.classes) else np.zeros(0)

    @property
    def recall(self) -> np.ndarray:
        """[C] recall of each class at the best-F1 confidence."""
        return self.r[:, self.best] if len(self.classes) else np.zeros(0)

    @property
    def best_conf(self) -> float:
        return float(CONF_GRID[self.best])


def _class_curves(tp: np.ndarray, conf: np.ndarray, n_gt: int) -> tuple[np.ndarray, ...]:
    """(p, r, pr) curves of one class from its detections' tp [n] and conf [n] (ignored ones removed)."""
    order = np.argsort(-conf, kind="stable")
    tpc = np.cumsum(tp[order])
    fpc = np.cumsum(~tp[order])
    recall = tpc / (n_gt + _EPS)
    precision = tpc / np.maximum(tpc + fpc, 1)
    x = -conf[order]
    r = np.interp(-CONF_GRID, x, recall, left=0)
    p = np.interp(-CONF_GRID, x, precision, left=1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.flip(np.maximum.accumulate(np.flip(np.concatenate([[1.0], precision, [0.0]]))))
    return p, r, np.interp(CONF_GRID, mrec, mpre)


def _smooth(y: np.ndarray, width: int = 101) -> np.ndarray:
    """Box-filter smoothing with edge padding (same length)."""
    half = width // 2
    padded = np.concatenate([np.full(half, y[0]), y, np.full(half, y[-1])])
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def pr_curves(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, ignored: np.ndarray,
              n_gt: np.ndarray) -> PRCurves:
    """Curves at IoU 0.5 from all detections of a run.

    Args:
        tp, ignored: bool [N] (the IoU-0.5 column of `match_image`'s outputs); conf, pred_cls: [N].
        n_gt: int [nc] non-crowd targets per class.
    """
    classes = np.nonzero(n_gt > 0)[0]
    shape = (len(classes), len(CONF_GRID))
    p, r, pr = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    keep = ~ignored
    for row, c in enumerate(classes):
        sel = keep & (pred_cls == c)
        if sel.any():
            p[row], r[row], pr[row] = _class_curves(tp[sel], conf[sel], int(n_gt[c]))
    f1 = 2 * p * r / (p + r + _EPS)
    best = int(_smooth(f1.mean(0)).argmax()) if len(classes) else 0
    return PRCurves(classes, p, r, f1, pr, best)


# ---------------------------------------------------------------------------------------- pycocotools


@dataclass(frozen=True)
class CocoScores:
    """pycocotools results: `stats` [12] in `COCO_STAT_NAMES` order (-1 where undefined), and per category
    id the AP50-95 and AP50 (area all, maxDets 100; -1 for categories without targets)."""

    stats: np.ndarray
    ap: dict[int, float]
    ap50: dict[int, float]
    summary: str = ""

    def stat(self, name: str) -> float:
        return float(self.stats[COCO_STAT_NAMES.index(name)])


EVAL_GROUP_DETECTIONS = 20_000  # detections made COCO dicts at a time (about 1 KB each in COCOeval; peak ~60 MB)


def coco_evaluate(gt: dict[str, Any], detections: CocoDetections, img_ids: list[Any],
                  cat_ids: list[int] | None = None, group_size: int = EVAL_GROUP_DETECTIONS) -> CocoScores:
    """Run COCOeval (bbox) on `detections` against `gt` (a COCO dataset dict), restricted to `img_ids` and
    `cat_ids` (None: every category of `gt`).

    COCOeval scores each category on its own, so the categories are evaluated in groups of about
    `group_size` detections and their precision/recall arrays joined along the category axis before
    pycocotools' own `summarize`: the numbers are those of one COCOeval over everything, while only one
    group's detections exist as COCO dicts at a time (a COCO val run at conf=0.001 has 1.5 million).
    pycocotools marks the ground-truth dicts with an `ignore` key (as it always does)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not len(detections):
        return CocoScores(np.zeros(len(COCO_STAT_NAMES)), {}, {})
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        categories = sorted(set(coco_gt.getCatIds() if cat_ids is None else cat_ids))
        parts = []
        for group in detections.category_groups(categories, group_size):
            evaluator = COCOeval(coco_gt, detections.to_coco(coco_gt, group), "bbox")
            evaluator.params.imgIds = list(img_ids)
            evaluator.params.catIds = group
            evaluator.evaluate()
            evaluator.accumulate()
            parts.append(evaluator.eval)
        evaluator.params.catIds = categories
        evaluator.eval = _joined_eval(parts, evaluator.params)
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    ap, ap50 = _per_category(evaluator)
    return CocoScores(np.asarray(evaluator.stats, dtype=np.float64), ap, ap50, summary.getvalue())


def _joined_eval(parts: list[dict[str, Any]], params: Any) -> dict[str, Any]:
    """COCOeval `eval` dicts of disjoint, increasing category groups -> one, as if evaluated together:
    precision/scores [T,R,K,A,M] and recall [T,K,A,M] concatenated along K."""
    precision = np.concatenate([part["precision"] for part in parts], axis=2)
    return {"params": params, "counts": list(precision.shape), "precision": precision,
            "recall": np.concatenate([part["recall"] for part in parts], axis=1),
            "scores": np.concatenate([part["scores"] for part in parts], axis=2)}


def _per_category(evaluator: Any) -> tuple[dict[int, float], dict[int, float]]:
    """AP50-95 and AP50 per category id from COCOeval's precision [T, R, K, A, M] (area all, maxDets 100)."""
    precision = evaluator.eval["precision"]
    m = list(evaluator.params.maxDets).index(100) if 100 in evaluator.params.maxDets else -1
    ap, ap50 = {}, {}
    for k, cat in enumerate(evaluator.params.catIds):
        every, first = precision[:, :, k, 0, m], precision[0, :, k, 0, m]
        ap[int(cat)] = float(every[every > -1].mean()) if (every > -1).any() else -1.0
        ap50[int(cat)] = float(first[first > -1].mean()) if (first > -1).any() else -1.0
    return ap, ap50


class CocoGroundTruth:
    """Builds an in-memory COCO ground-truth dict from per-image labels (txt-labelled datasets).

    Boxes are stored as ltwh floats, `area` is the label's area (the box area), crowd rows as iscrowd=1.
    """

    def __init__(self, names: dict[int, str], category_ids: list[int]):
        self.category_ids = category_ids
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.categories = [{"id": category_ids[i], "name": names[i], "supercategory": ""}
                           for i in sorted(names)]

    def add(self, image_id: Any, file_name: str, hw: tuple[int, int], labels: Labels) -> None:
        """Register one evaluated image and its labels."""
        self.images.append({"id": image_id, "file_name": file_name, "height": hw[0], "width": hw[1]})
        for cls, box, crowd, area in zip(labels.cls, labels.boxes, labels.crowd, labels.area):
            x1, y1, x2, y2 = (float(v) for v in box)
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id,
                                     "category_id": self.category_ids[int(cls)],
                                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(area),
                                     "iscrowd": int(crowd)})

    def to_dict(self) -> dict[str, Any]:
        return {"info": {}, "licenses": [], "images": self.images, "annotations": self.annotations,
                "categories": self.categories}


def coco_detections(image_id: Any, det: np.ndarray, category_ids: list[int]) -> list[dict[str, Any]]:
    """COCO results entries of one image: bbox [x, y, w, h] rounded to 3 decimals, score to 5."""
    entries = []
    for x1, y1, x2, y2, score, cls in np.asarray(det, dtype=np.float64).tolist():
        entries.append({"image_id": image_id, "category_id": category_ids[int(cls)],
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(score, 5)})
    return entries


class CocoDetections:
    """The detections of a val run, held compactly until they are scored or saved: per image its id and a
    float32 [K, 6] array (x1, y1, x2, y2, conf, cls; original pixels), 24 bytes a detection where a COCO
    results dict costs about 1 KB. COCO dicts (`coco_detections`) are made only when needed, a group of
    categories at a time (`to_coco`) or an image at a time (`json_chunks`)."""

    def __init__(self, category_ids: list[int]):
        self.category_ids = list(category_ids)
        self.image_ids: list[Any] = []
        self.rows: list[np.ndarray] = []
        self.per_class = np.zeros(len(category_ids), np.int64)

    def add(self, image_id: Any, det: np.ndarray) -> None:
        """Keep one image's detections [K, 6]."""
        det = np.asarray(det, dtype=np.float32).reshape(-1, 6)
        self.image_ids.append(image_id)
        self.rows.append(det)
        self.per_class += np.bincount(det[:, 5].astype(np.int64), minlength=len(self.category_ids))

    def __len__(self) -> int:
        return int(self.per_class.sum())

    def entries(self, category_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """COCO results dicts of every image, in image order (only `category_ids` when given)."""
        wanted = None if category_ids is None else np.isin(self.category_ids, category_ids)
        out: list[dict[str, Any]] = []
        for image_id, det in zip(self.image_ids, self.rows):
            if wanted is not None:
                det = det[wanted[det[:, 5].astype(np.int64)]]
            out += coco_detections(image_id, det, self.category_ids)
        return out

    def category_groups(self, categories: list[int], group_size: int) -> list[list[int]]:
        """`categories` (sorted) cut into consecutive groups of about `group_size` detections each."""
        count = dict(zip(self.category_ids, self.per_class.tolist()))
        groups: list[list[int]] = [[]]
        total = 0
        for cat in categories:
            if groups[-1] and total + count.get(cat, 0) > group_size:
                groups.append([])
                total = 0
            groups[-1].append(cat)
            total += count.get(cat, 0)
        return groups

    def to_coco(self, coco_gt: Any, category_ids: list[int]) -> Any:
        """A pycocotools results `COCO` of the detections of `category_ids`, as `COCO.loadRes` makes for
        boxes (area w*h, ids from 1, iscrowd 0) without its unused box-polygon `segmentation`."""
        from pycocotools.coco import COCO

        annotations = self.entries(category_ids)
        for number, ann in enumerate(annotations, 1):
            ann["area"] = ann["bbox"][2] * ann["bbox"][3]
            ann["id"], ann["iscrowd"] = number, 0
        results = COCO()
        results.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": annotations,
                           "categories": coco_gt.dataset["categories"]}
        results.createIndex()
        return results

    def json_chunks(self) -> Iterator[bytes]:
        """predictions.json piece by piece: the COCO results list, the same text as `json.dumps` of it."""
        yield b"["
        separator = b""
        for image_id, det in zip(self.image_ids, self.rows):
            if len(det):
                entries = coco_detections(image_id, det, self.category_ids)
                yield separator + ", ".join(json.dumps(entry) for entry in entries).encode("utf-8")
                separator = b", "
        yield b"]"


# ---------------------------------------------------------------------------------------- confusion


class ConfusionMatrix:
    """Counts [nc + 1, nc + 1]: rows predicted class, columns true class, index nc = background."""

    def __init__(self, nc: int, conf: float = 0.25, iou: float = 0.45):
        self.nc, self.conf, self.iou = nc, conf, iou
        self.matrix = np.zeros((nc + 1, nc + 1), np.int64)

    def update(self, det: np.ndarray, gt: Labels) -> None:
        """Add one image: det [K, 6] (xyxy, conf, cls), its labels (crowd rows are left out)."""
        det = det[det[:, 4] >= self.conf]
        gt = gt.select(~gt.crowd)
        pred_cls, true_cls = det[:, 5].astype(np.int64), gt.cls
        used_p, used_t = np.zeros(len(det), bool), np.zeros(len(gt), bool)
        if len(det) and len(gt):
            iou = box_iou_np(det[:, :4], gt.boxes)
            pairs = np.argwhere(iou > self.iou)
            for i, j in pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")]:
                if not used_p[i] and not used_t[j]:
                    used_p[i] = used_t[j] = True
                    self.matrix[pred_cls[i], true_cls[j]] += 1
        np.add.at(self.matrix[self.nc], true_cls[~used_t], 1)  # missed: predicted background
        np.add.at(self.matrix[:, self.nc], pred_cls[~used_p], 1)  # false: true background


# ---------------------------------------------------------------------------------------- results


@dataclass
class BoxMetrics:
    """Box metrics of a val run (the numbers `yolo-nas val` prints).

    map, map50, map75, map_small, map_medium, map_large: pycocotools' COCOeval stats (0 when undefined).
    ap_class_index: int [C] the classes with targets; p, r, ap50, ap: float [C] per such class (P and R at the
    best-F1 confidence, AP from COCOeval). mp, mr: mean P and R over them. images, instances: int [nc] per
    class, images containing the class and its non-crowd boxes.
    """

    nc: int
    map: float = 0.0
    map50: float = 0.0
    map75: float = 0.0
    map_small: float = 0.0
    map_medium: float = 0.0
    map_large: float = 0.0
    mp: float = 0.0
    mr: float = 0.0
    ap_class_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap50: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    instances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    best_conf: float = 0.0

    @property
    def maps(self) -> np.ndarray:
        """float [nc] mAP50-95 per class; classes without targets get the overall `map` (as Ultralytics)."""
        out = np.full(self.nc, self.map, dtype=np.float64)
        out[self.ap_class_index] = self.ap
        return out

    @property
    def fitness(self) -> float:
        """0.1 mAP50 + 0.9 mAP50-95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(P, R, mAP50, mAP50-95) of the i-th class of `ap_class_index`."""
        return float(self.p[i]), float(self.r[i]), float(self.ap50[i]), float(self.ap[i])


@dataclass
class ValMetrics:
    """What `validate()` / `NAS.val()` returns.

    box: the `BoxMetrics`; speed: ms per image {preprocess, inference, loss, postprocess}; names: class
    names; seen: images evaluated; skipped: corrupt images skipped; coco: every COCOeval stat by name;
    sg: the original's metric (protocol=sg, `sg_metric.SGResult.as_dict`: mAP50-95, mAP50, mAP75, its own
    precision, recall, f1 at score_threshold, best_score_threshold, pr_definition) or None; save_dir: the run
    folder.
    """

    box: BoxMetrics
    speed: dict[str, float]
    names: dict[int, str]
    seen: int = 0
    skipped: int = 0
    coco: dict[str, float] = field(default_factory=dict)
    sg: dict[str, Any] | None = None
    save_dir: Path | None = None
    protocol: str = "coco"

    @property
    def fitness(self) -> float:
        return self.box.fitness

    @property
    def keys(self) -> list[str]:
        return ["metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"]

    @property
    def results_dict(self) -> dict[str, float]:
        """Ultralytics' keys: metrics/precision(B), metrics/recall(B), metrics/mAP50(B),
        metrics/mAP50-95(B), fitness."""
        values = [self.box.mp, self.box.mr, self.box.map50, self.box.map]
        return {**dict(zip(self.keys, map(float, values))), "fitness": float(self.fitness)}

    def to_dict(self) -> dict[str, Any]:
        """Every printed number, JSON-ready (metrics.json)."""
        b = self.box
        classes = [{"class": int(c), "name": self.names[int(c)], "images": int(b.images[c]),
                    "instances": int(b.instances[c]), "precision": float(b.p[i]), "recall": float(b.r[i]),
                    "mAP50": float(b.ap50[i]), "mAP50-95": float(b.ap[i])}
                   for i, c in enumerate(b.ap_class_index)]
        return {"protocol": self.protocol, "images": self.seen, "skipped_images": self.skipped,
                "instances": int(b.instances.sum()) if len(b.instances) else 0,
                "all": {"precision": b.mp, "recall": b.mr, "mAP50": b.map50, "mAP50-95": b.map,
                        "mAP75": b.map75, "mAP_small": b.map_small, "mAP_medium": b.map_medium,
                        "mAP_large": b.map_large, "best_f1_conf": b.best_conf, "pr_definition": PR_DEFINITION},
                "classes": classes, "coco": dict(self.coco), "sg": self.sg, "speed": dict(self.speed),
                "results_dict": self.results_dict}

    def __repr__(self) -> str:
        b = self.box
        return (f"ValMetrics(images={self.seen}, mAP50-95={b.map:.4f}, mAP50={b.map50:.4f}, "
                f"mAP75={b.map75:.4f}, P={b.mp:.4f}, R={b.mr:.4f})")


# ---------------------------------------------------------------------------------------- plots


WHITE, BLACK, GREY, BLUE = (255, 255, 255), (0, 0, 0), (170, 170, 170), (180, 119, 31)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5, colour=BLACK,
          thickness: int = 1) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def _vertical_text(img: np.ndarray, text: str, x: int, y_bottom: int, scale: float = 0.4) -> None:
    """Draw `text` rotated 90° counter-clockwise with its baseline end at (x, y_bottom)."""
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    patch = np.full((h + base + 2, w + 2, 3), 255, np.uint8)
    _text(patch, text, (1, h + 1), scale)
    patch = np.ascontiguousarray(cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE), dtype=np.uint8)
    y0, x0 = max(y_bottom - patch.shape[0], 0), max(x - patch.shape[1] // 2, 0)
    region = img[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]]
    np.minimum(region, patch[:region.shape[0], :region.shape[1]], out=region)


def plot_pr_curve(path: Path, curves: PRCurves, names: dict[int, str], ap50: np.ndarray,
                  map50: float) -> Path:
    """BoxPR_curve.png: precision against recall at IoU 0.5 per class (grey; labelled when <= 20 classes)
    and their mean (blue). Returns the path."""
    w, h, m = 900, 700, 70
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - 2 * m - 160, h - 2 * m

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([m + x * pw, m + (1 - y) * ph], 1).round().astype(np.int32)

    _axes(img, m, pw, ph, "Recall", "Precision")
    for row in range(len(curves.classes)):
        cv2.polylines(img, [to_px(CONF_GRID, curves.pr[row])], False, GREY, 1, cv2.LINE_AA)
    if len(curves.classes):
        cv2.polylines(img, [to_px(CONF_GRID, curves.pr.mean(0))], False, BLUE, 3, cv2.LINE_AA)
    _text(img, f"all classes {map50:.3f} mAP@0.5", (m + pw + 10, m + 10), 0.45, BLUE)
    if len(curves.classes) <= 20:
        for row, c in enumerate(curves.classes):
            _text(img, f"{names[int(c)][:14]} {ap50[row]:.3f}", (m + pw + 10, m + 32 + 18 * row), 0.4)
    return atomic_imwrite(path, img)


def _axes(img: np.ndarray, m: int, pw: int, ph: int, xlabel: str, ylabel: str) -> None:
    cv2.rectangle(img, (m, m), (m + pw, m + ph), BLACK, 1)
    for i in range(11):
        v = i / 10
        x, y = int(m + v * pw), int(m + (1 - v) * ph)
        cv2.line(img, (x, m + ph), (x, m + ph + 5), BLACK, 1)
        cv2.line(img, (m - 5, y), (m, y), BLACK, 1)
        _text(img, f"{v:.1f}", (x - 10, m + ph + 20), 0.4)
        _text(img, f"{v:.1f}", (m - 35, y + 4), 0.4)
    _text(img, xlabel, (m + pw // 2 - 25, m + ph + 45), 0.55)
    _vertical_text(img, ylabel, 18, m + ph // 2 + 40, 0.55)


def plot_confusion_matrix(path: Path, matrix: np.ndarray, names: dict[int, str]) -> Path:
    """confusion_matrix.png: each true-class column normalised to 1 (white to blue), counts written in the
    cells; only classes that occur (row or column non-zero) plus background are shown. Returns the path."""
    nc = matrix.shape[0] - 1
    shown = [i for i in range(nc) if matrix[i].any() or matrix[:, i].any()] + [nc]
    sub = matrix[np.ix_(shown, shown)].astype(np.float64)
    norm = sub / np.maximum(sub.sum(0, keepdims=True), 1)
    labels = [names.get(i, str(i))[:16] if i < nc else "background" for i in shown]
    n = len(shown)
    cell = int(np.clip(720 // n, 14, 72))
    left, top = 150, 50
    img = np.full((top + n * cell + 150, max(left + n * cell + 30, 560), 3), 255, np.uint8)
    for r in range(n):
        for c in range(n):
            _cell(img, left + c * cell, top + r * cell, cell, norm[r, c], int(sub[r, c]))
    for i, label in enumerate(labels):
        _text(img, label, (25, top + i * cell + cell // 2 + 4), 0.4)
        _vertical_text(img, label, left + i * cell + cell // 2, top + n * cell + 115, 0.4)
    _text(img, "Confusion matrix (each true-class column sums to 1)", (left, 22), 0.5)
    _text(img, "True", (left + n * cell // 2 - 15, top + n * cell + 140), 0.5)
    _text(img, "Predicted", (left - 10, 42), 0.45)
    return atomic_imwrite(path, img)


def _cell(img: np.ndarray, x: int, y: int, size: int, value: float, count: int) -> None:
    colour = tuple(round(255 - value * (255 - c)) for c in BLUE)
    cv2.rectangle(img, (x, y), (x + size, y + size), colour, -1)
    cv2.rectangle(img, (x, y), (x + size, y + size), GREY, 1)
    if count and size >= 22:
        text_colour = WHITE if value > 0.5 else BLACK
        _text(img, str(count), (x + 3, y + size // 2 + 4), min(0.6, size / 70), text_colour)
