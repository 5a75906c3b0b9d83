"""COCO mAP with pycocotools: the ground truth and the detections of a run held compactly, and `COCOeval`
run on them a group of categories at a time.

mAP50-95, mAP50, mAP75 and AP small/medium/large are pycocotools' `COCOeval` numbers (bbox, maxDets 100, 101
recall points, crowd handling), per class from its precision array. These are the numbers `yolo-nas val`
prints. Boxes: xyxy in original-image pixels; detections are float [K, 6] rows (x1, y1, x2, y2, conf, cls).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from yolonas_cli.data.datasets.labels import Labels

COCO_STAT_NAMES = (
    "mAP50-95",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass(frozen=True)
class CocoScores:
    """pycocotools results: `stats` [12] in `COCO_STAT_NAMES` order (-1 where undefined), and per category
    id the AP50-95 and AP50 (area all, maxDets 100; -1 for categories without targets) and `ap_iou`, the AP
    at each of the 10 IoU thresholds 0.50:0.05:0.95 (float [10], -1 where undefined)."""

    stats: np.ndarray
    ap: dict[int, float]
    ap50: dict[int, float]
    summary: str = ""
    ap_iou: dict[int, np.ndarray] = field(default_factory=dict)

    def stat(self, name: str) -> float:
        return float(self.stats[COCO_STAT_NAMES.index(name)])


EVAL_GROUP_DETECTIONS = 20_000  # detections made COCO dicts at a time (about 1 KB each in COCOeval; peak ~60 MB)


def coco_evaluate(
    gt: dict[str, Any],
    detections: CocoDetections,
    img_ids: list[Any],
    cat_ids: list[int] | None = None,
    group_size: int = EVAL_GROUP_DETECTIONS,
) -> CocoScores:
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
    ap, ap50, ap_iou = _per_category(evaluator)
    return CocoScores(np.asarray(evaluator.stats, dtype=np.float64), ap, ap50, summary.getvalue(), ap_iou)


def _joined_eval(parts: list[dict[str, Any]], params: Any) -> dict[str, Any]:
    """COCOeval `eval` dicts of disjoint, increasing category groups -> one, as if evaluated together:
    precision/scores [T,R,K,A,M] and recall [T,K,A,M] concatenated along K."""
    precision = np.concatenate([part["precision"] for part in parts], axis=2)
    return {
        "params": params,
        "counts": list(precision.shape),
        "precision": precision,
        "recall": np.concatenate([part["recall"] for part in parts], axis=1),
        "scores": np.concatenate([part["scores"] for part in parts], axis=2),
    }


def _per_category(evaluator: Any) -> tuple[dict[int, float], dict[int, float], dict[int, np.ndarray]]:
    """AP50-95, AP50 and the AP at each IoU threshold per category id, from COCOeval's precision [T, R, K, A, M]
    (area all, maxDets 100); -1 where a category has no defined value."""
    precision = evaluator.eval["precision"]
    m = list(evaluator.params.maxDets).index(100) if 100 in evaluator.params.maxDets else -1
    ap, ap50, ap_iou = {}, {}, {}
    for k, cat in enumerate(evaluator.params.catIds):
        every = precision[:, :, k, 0, m]  # [T, R]
        valid = every > -1
        per_iou = np.array([row[ok].mean() if ok.any() else -1.0 for row, ok in zip(every, valid)], np.float64)
        ap[int(cat)] = float(every[valid].mean()) if valid.any() else -1.0
        ap50[int(cat)] = float(per_iou[0])
        ap_iou[int(cat)] = per_iou
    return ap, ap50, ap_iou


class CocoGroundTruth:
    """Builds an in-memory COCO ground-truth dict from per-image labels (txt-labelled datasets).

    Boxes are stored as ltwh floats, `area` is the label's area (the box area), crowd rows as iscrowd=1.
    """

    def __init__(self, names: dict[int, str], category_ids: list[int]):
        self.category_ids = category_ids
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.categories = [{"id": category_ids[i], "name": names[i], "supercategory": ""} for i in sorted(names)]

    def add(self, image_id: Any, file_name: str, hw: tuple[int, int], labels: Labels) -> None:
        """Register one evaluated image and its labels."""
        self.images.append({"id": image_id, "file_name": file_name, "height": hw[0], "width": hw[1]})
        for cls, box, crowd, area in zip(labels.cls, labels.boxes, labels.crowd, labels.area):
            x1, y1, x2, y2 = (float(v) for v in box)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": self.category_ids[int(cls)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(area),
                    "iscrowd": int(crowd),
                }
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": {},
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }


def coco_detections(image_id: Any, det: np.ndarray, category_ids: list[int]) -> list[dict[str, Any]]:
    """COCO results entries of one image: bbox [x, y, w, h] rounded to 3 decimals, score to 5."""
    entries = []
    for x1, y1, x2, y2, score, cls in np.asarray(det, dtype=np.float64).tolist():
        entries.append(
            {
                "image_id": image_id,
                "category_id": category_ids[int(cls)],
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
            }
        )
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
        results.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "annotations": annotations,
            "categories": coco_gt.dataset["categories"],
        }
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
