"""Metric building blocks: IoU, COCO-style matching, P/R curves, the pycocotools wrapper, the confusion
matrix, the plots, and the original's val letterbox (its metric: test_sg_metric.py)."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolonas_cli.data.datasets.labels import Labels
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.metrics.coco import CocoDetections, CocoGroundTruth, coco_detections, coco_evaluate
from yolonas_cli.metrics.confusion import ConfusionMatrix
from yolonas_cli.metrics.curves import pr_curves
from yolonas_cli.metrics.matching import IOU_THRESHOLDS, box_ioa_np, box_iou_np, match_image
from yolonas_cli.metrics.plots import plot_confusion_matrix, plot_pr_curve
from yolonas_cli.metrics.sg import sg_letterbox


def det_rows(*rows: tuple[float, ...]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def labels(cls, boxes, crowd=None) -> Labels:
    return Labels.from_xyxy(cls, boxes, crowd)


# ---------------------------------------------------------------------------------------- IoU


def test_box_iou_and_ioa_match_brute_force():
    rng = np.random.default_rng(1)
    a = np.sort(rng.uniform(0, 50, (7, 2, 2)), axis=1).transpose(0, 2, 1).reshape(7, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 50, (5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    iou, ioa = box_iou_np(a, b), box_ioa_np(a, b)
    for i in range(7):
        for j in range(5):
            w = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            h = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            area_a = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
            area_b = (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
            assert iou[i, j] == pytest.approx(w * h / (area_a + area_b - w * h))
            assert ioa[i, j] == pytest.approx(w * h / area_a)


# ---------------------------------------------------------------------------------------- matching


def test_match_prefers_confidence_then_iou_and_needs_same_class():
    gt = labels([0], [[0, 0, 10, 10]])
    det = det_rows((0, 0, 10, 9, 0.5, 0), (0, 0, 10, 10, 0.9, 0), (0, 0, 10, 10, 0.95, 1))
    tp, ignored = match_image(det, gt)
    assert tp[:, 0].tolist() == [False, True, False]  # the more confident one wins, whatever its IoU
    assert not ignored.any()


def test_match_respects_each_threshold():
    gt = labels([3], [[0, 0, 10, 10]])
    det = det_rows((0, 0, 10, 7, 0.9, 3))  # IoU 0.7
    tp, _ = match_image(det, gt)
    assert tp[0].tolist() == [t <= 0.7 + 1e-12 for t in IOU_THRESHOLDS]


def test_unmatched_detection_on_a_crowd_box_is_ignored():
    gt = labels([0, 0], [[0, 0, 10, 10], [20, 0, 60, 40]], crowd=[False, True])
    det = det_rows((0, 0, 10, 10, 0.9, 0), (25, 5, 35, 15, 0.8, 0), (25, 5, 35, 15, 0.7, 1), (80, 80, 90, 90, 0.6, 0))
    tp, ignored = match_image(det, gt)
    assert tp[:, 0].tolist() == [True, False, False, False]
    assert ignored[:, 0].tolist() == [False, True, False, False]  # other class and far away are FPs


# ---------------------------------------------------------------------------------------- P, R


def test_pr_curves_perfect_and_half():
    tp = np.array([True, True, True, False])
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    cls = np.array([0, 0, 1, 1])
    curves = pr_curves(tp, conf, cls, np.zeros(4, bool), np.array([2, 2, 0]))
    assert curves.classes.tolist() == [0, 1]
    assert curves.precision[0] == pytest.approx(1.0) and curves.recall[0] == pytest.approx(1.0, abs=1e-9)
    assert curves.recall[1] == pytest.approx(0.5, abs=1e-9)
    assert curves.pr.shape == (2, 1000)


# ---------------------------------------------------------------------------------------- pycocotools


def detections_of(per_image: dict, category_ids: list[int]) -> CocoDetections:
    store = CocoDetections(category_ids)
    for image_id, det in per_image.items():
        store.add(image_id, det)
    return store


def test_coco_evaluate_perfect_predictions_and_category_ids():
    gt = CocoGroundTruth({0: "a", 1: "b"}, [5, 9])
    gt.add(1, "1.jpg", (100, 100), labels([0, 1], [[10, 10, 50, 50], [60, 60, 90, 95]]))
    gt.add(2, "2.jpg", (100, 100), Labels.empty())
    preds = coco_detections(1, det_rows((10, 10, 50, 50, 0.9, 0), (60, 60, 90, 95, 0.8, 1)), [5, 9])
    assert [p["category_id"] for p in preds] == [5, 9] and preds[0]["bbox"] == [10.0, 10.0, 40.0, 40.0]
    store = detections_of({1: det_rows((10, 10, 50, 50, 0.9, 0), (60, 60, 90, 95, 0.8, 1)), 2: det_rows()}, [5, 9])
    assert len(store) == 2 and store.entries() == preds
    scores = coco_evaluate(gt.to_dict(), store, [1, 2])
    assert scores.stat("mAP50-95") == pytest.approx(1.0) and scores.ap == pytest.approx({5: 1.0, 9: 1.0})
    assert coco_evaluate(gt.to_dict(), detections_of({}, [5, 9]), [1, 2]).stats.max() == 0


def crowded_scene(seed: int, images: int = 30, classes: int = 7):
    """A COCO ground truth (boxes of every COCO area range, a few crowd boxes) and detections near it: jittered
    true boxes, duplicates and false positives, with tied scores, over `classes` categories (ids 3, 6, 9...)."""
    rng = np.random.default_rng(seed)
    category_ids = [3 * (c + 1) for c in range(classes)]
    gt = CocoGroundTruth({c: f"c{c}" for c in range(classes)}, category_ids)
    per_image = {}
    for image_id in range(100, 100 + images):
        n = int(rng.integers(0, 9))
        xy = rng.uniform(0, 400, (n, 2))
        boxes = np.concatenate([xy, xy + rng.choice([8.0, 50.0, 150.0], (n, 1)) * rng.uniform(0.5, 1.5, (n, 2))], 1)
        cls = rng.integers(0, classes, n)
        gt.add(image_id, f"{image_id}.jpg", (640, 640), labels(cls, boxes, rng.random(n) < 0.1))
        jitter = boxes + rng.normal(0, 4, boxes.shape)
        false = np.concatenate([xy := rng.uniform(0, 500, (6, 2)), xy + rng.uniform(5, 120, (6, 2))], 1)
        all_boxes = np.concatenate([jitter, jitter[: n // 2] + 2, false])
        all_cls = np.concatenate([cls, cls[: n // 2], rng.integers(0, classes, 6)])
        scores = np.round(rng.uniform(0.001, 1, len(all_boxes)), 2)  # ties
        per_image[image_id] = np.concatenate([all_boxes, scores[:, None], all_cls[:, None]], 1)
    return gt.to_dict(), per_image, category_ids


def plain_cocoeval(gt: dict, entries: list[dict], img_ids: list, cat_ids: list[int] | None = None):
    """One pycocotools COCOeval over everything, through `loadRes` (the textbook way)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(entries))), "bbox")
        ev.params.imgIds = img_ids
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("group_size", [1, 120, 10_000])
def test_grouped_evaluation_equals_one_cocoeval(seed: int, group_size: int):
    """Categories scored in groups (one category each, a few, or all at once) give exactly the numbers of one
    COCOeval over everything: the 12 stats and the per-category AP, with or without a category subset."""
    gt, per_image, category_ids = crowded_scene(seed)
    store = detections_of(per_image, category_ids)
    img_ids = list(per_image)
    groups = store.category_groups(category_ids, group_size)
    assert [c for group in groups for c in group] == category_ids
    assert (len(groups) == len(category_ids)) == (group_size == 1)
    for cat_ids in (None, [12, 3, 18]):
        reference = plain_cocoeval(gt, store.entries(), img_ids, cat_ids)
        assert reference.stats[0] > 0.1  # a real score, not a degenerate 0 or -1
        got = coco_evaluate(gt, store, img_ids, cat_ids, group_size=group_size)
        np.testing.assert_allclose(got.stats, reference.stats, rtol=0, atol=1e-12)
        precision = reference.eval["precision"][:, :, :, 0, -1]
        for k, cat in enumerate(reference.params.catIds):
            assert got.ap[cat] == pytest.approx(precision[:, :, k][precision[:, :, k] > -1].mean(), abs=1e-12)


def test_category_groups_respect_the_budget():
    _, per_image, category_ids = crowded_scene(2, images=60)
    store = detections_of(per_image, category_ids)
    count = dict(zip(category_ids, store.per_class.tolist()))
    for size in (1, 25, 60, 10**6):
        groups = store.category_groups(category_ids, size)
        assert [c for group in groups for c in group] == category_ids
        for group in groups:
            assert len(group) == 1 or sum(count[c] for c in group) <= size
    assert len(store.category_groups(category_ids, 10**6)) == 1


def test_predictions_json_is_the_coco_results_list():
    """Streamed predictions.json: the same text as json.dumps of the whole list (images without detections
    included), and category filtering keeps image order."""
    _, per_image, category_ids = crowded_scene(3, images=12)
    per_image[999] = det_rows()
    store = detections_of(per_image, category_ids)
    entries = store.entries()
    assert len(entries) == len(store) > 50
    assert b"".join(store.json_chunks()).decode() == json.dumps(entries)
    assert b"".join(detections_of({}, category_ids).json_chunks()) == b"[]"
    only = store.entries([6, 9])
    assert only == [e for e in entries if e["category_id"] in (6, 9)] and only


def test_confusion_matrix_counts():
    cm = ConfusionMatrix(2)
    gt = labels([0, 1, 1], [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]])
    det = det_rows((0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.9, 0), (80, 80, 90, 90, 0.9, 1), (50, 50, 60, 60, 0.1, 1))
    cm.update(det, gt)
    expected = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0]])  # rows predicted, columns true, 2 = background
    assert np.array_equal(cm.matrix, expected)


def test_plots_are_written_with_opencv(tmp_path):
    tp = np.array([True, False, True])
    conf, cls = np.array([0.9, 0.5, 0.4]), np.array([0, 0, 1])
    curves = pr_curves(tp, conf, cls, np.zeros(3, bool), np.array([1, 2]))
    pr = plot_pr_curve(tmp_path / "BoxPR_curve.png", curves, {0: "a", 1: "b"}, np.array([1.0, 0.5]), 0.75)
    cm = ConfusionMatrix(2)
    cm.update(det_rows((0, 0, 10, 10, 0.9, 0)), labels([1], [[0, 0, 10, 10]]))
    cmp = plot_confusion_matrix(tmp_path / "confusion_matrix.png", cm.matrix, {0: "a", 1: "b"})
    for path in (pr, cmp):
        img = cv2.imread(str(path))
        assert img is not None and img.std() > 0


# ------------------------------------------------------------------------------------ the original's val letterbox


def test_sg_letterbox_truncates_where_predict_rounds():
    sg = sg_letterbox((481, 640))
    assert sg.resized_hw == (477, 636)  # 481 * 636 / 640 = 477.99 -> 477
    assert Letterbox.for_image((481, 640), 640).resized_hw == (478, 636)
    assert (sg.pad_top, sg.pad_left, sg.padded_hw) == ((640 - 477) // 2, 2, (640, 640))
