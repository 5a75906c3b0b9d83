"""The original's metric (`protocol=sg`, SuperGradients 3.7.1 `DetectionMetrics`): every number the original
computed on the four scenarios of tests/fixtures/sg_metric (copied unedited from the shared fixtures, README
beside them) to 1e-6; small cases derived by hand that each isolate one behaviour; agreement with pycocotools
where the two definitions coincide; and `val protocol=sg` through the CLI on a tiny dataset."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from sg_fixture import SCENARIOS, SETTINGS, fixture_inputs, original, scored
from yolonas_cli.cli.app import app
from yolonas_cli.core.coco import COCO80_NAMES
from yolonas_cli.core.errors import UsageError
from yolonas_cli.data.datasets.labels import Labels
from yolonas_cli.engine.engine import Engine
from yolonas_cli.metrics.coco import CocoGroundTruth
from yolonas_cli.metrics.sg import SG_IOU_THRESHOLDS, SG_RECALL_POINTS, linspace32, sg_evaluate

# The brief's bound. Measured: 2.4e-7 at most (per-class AP; the float32 means of 101 or 10 values are summed in
# another order than the torch build that made the fixture), the same with ATEN_CPU_CAPABILITY=default or avx2.
TOL = 1e-6


# ---------------------------------------------------------------------------------------- the original's numbers


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_number_of_the_original(scenario: str, setting: str):
    """mAP, the original's precision, recall and F1 at its score threshold, and its best score threshold."""
    ours, theirs = scored(scenario, setting)
    assert ours == pytest.approx(theirs, abs=TOL)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_per_class_ap_and_map50_map75_of_the_original(scenario: str):
    result = sg_evaluate(*fixture_inputs(scenario), num_classes=6)
    expected = original(scenario)
    assert result.classes.tolist() == expected["classes"]  # class 5 of `base` has detections but no target
    np.testing.assert_allclose(result.ap, np.array(expected["ap"]), rtol=0, atol=TOL)
    assert result.map50 == pytest.approx(expected["map50"], abs=TOL)
    assert result.map75 == pytest.approx(expected["map75"], abs=TOL)
    assert result.maps[5] == 0 and result.maps[expected["classes"]] == pytest.approx(result.ap.mean(1))


CHECK_IN_SUBPROCESS = """
import json, sys
import torch
sys.path.insert(0, {tests!r})
from sg_fixture import worst_difference
from yolonas_cli.metrics.sg import linspace32
same = all(bool((linspace32(*g) == torch.linspace(*g).numpy()).all()) for g in [(0.0, 1.0, 101), (0.5, 0.95, 10)])
capability = torch.backends.cpu.get_cpu_capability()
print(json.dumps({{"worst": worst_difference(), "capability": capability, "linspace": same}}))
"""


def run_with_capability(capability: str) -> dict[str, Any]:
    """The fixture check in a fresh interpreter whose torch uses `capability` kernels."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}  # the metric runs no oneDNN kernel
    code = CHECK_IN_SUBPROCESS.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="AVX2 kernels are x86 only")
def test_the_original_numbers_do_not_depend_on_torch_kernels():
    """Under AVX2 kernels (the fixture's) torch.linspace equals `linspace32`; under the portable kernels it does
    not (0.70000005 at 70), yet the metric, whose grids are `linspace32`, gives the original's numbers in both."""
    avx2, portable = run_with_capability("avx2"), run_with_capability("default")
    assert (avx2["capability"], portable["capability"]) == ("AVX2", "DEFAULT")
    assert avx2["linspace"] and not portable["linspace"]
    assert avx2["worst"] < TOL and portable["worst"] < TOL


# ---------------------------------------------------------------------------------------- one behaviour each


def one_image(
    det: list[list[float]], targets: list[list[float]], crowd: list[list[float]] | None = None, **kwargs: Any
):
    return sg_evaluate(
        [np.array(det)], [np.array(targets)], None if crowd is None else [np.array(crowd)], num_classes=2, **kwargs
    )


def test_a_match_needs_iou_strictly_above_the_threshold():
    # target 10x10 (area 100); the detection is its top 10x7.5 (area 75): IoU = 75 / 100 = 0.75 exactly, and
    # the threshold 0.75 is exactly 0.75 in float32. It matches at 0.50 ... 0.70 (5 thresholds, AP 1 each) and
    # at none of 0.75 ... 0.95 (AP 0): mAP = 5 / 10 = 0.5, mAP75 = 0 (with >= it would be 0.6 and 1).
    assert SG_IOU_THRESHOLDS[5] == np.float32(0.75)
    result = one_image([[0, 0, 10, 7.5, 0.9, 0]], [[0, 0, 10, 10, 0]])
    assert result.ap[0].tolist() == [1.0] * 5 + [0.0] * 5
    assert (result.map, result.map50, result.map75) == (0.5, 1.0, 0.0)


def test_a_crowd_box_ignores_a_detection_only_strictly_above_the_threshold_and_never_a_match():
    # Threshold 0.5. Detection A (conf 0.9, 10x10) lies on a crowd box 5x10 of its class: intersection over A's
    # area = 50 / 100 = 0.5, not > 0.5, so A is a false positive. Detection B (conf 0.8) is exactly the one
    # target and lies inside a second crowd box, but a matched detection stays a TP.
    # Ranks: A FP, B TP -> precision [0, 1/2], monotone [1/2, 1/2], recall [0, 1]: every recall point samples
    # 1/2, AP = 0.5. With the first crowd box 6 wide (0.6 > 0.5) A is ignored: precision [-, 1], AP = 1.
    det = [[0, 0, 10, 10, 0.9, 0], [100, 100, 110, 110, 0.8, 0]]
    target = [[100, 100, 110, 110, 0]]
    half = one_image(det, target, [[0, 0, 5, 10, 0], [95, 95, 115, 115, 0]], iou_thresholds=[0.5])
    assert half.map == pytest.approx(0.5, abs=1e-7)
    wider = one_image(det, target, [[0, 0, 6, 10, 0], [95, 95, 115, 115, 0]], iou_thresholds=[0.5])
    assert wider.map == pytest.approx(1.0, abs=1e-7)


def test_detections_are_clipped_to_the_canvas_x_to_its_width_y_to_its_height():
    # Target [600, 280, 640, 320]; the detection [600, 280, 700, 360] reaches past the canvas.
    # Canvas (H, W) = (320, 640): clipped to [600, 280, 640, 320], IoU 1 -> mAP 1 (unclipped IoU would be
    # 1600 / 8000 = 0.2 -> mAP 0). Canvas (640, 640): clipped to [600, 280, 640, 360], IoU = 1600 / 3200 = 0.5,
    # not above any threshold -> mAP 0.
    det, target = [[600, 280, 700, 360, 0.9, 0]], [[600, 280, 640, 320, 0]]
    assert one_image(det, target, canvas_hw=(320, 640)).map == pytest.approx(1.0, abs=1e-7)
    assert one_image(det, target, canvas_hw=(640, 640)).map == 0.0


def test_top_k_is_per_class_and_per_image_and_confidence_zero_never_counts():
    # Image 1: class 0 targets [0,0,10,10], [20,20,30,30]; class-0 detections 0.9 (first target), 0.8 (nowhere),
    # 0.7 (second target); class 1 target [200,200,210,210] with detections 0.95 (on it) and 0.85 (nowhere).
    # Image 2: class-0 target [50,50,60,60], detection 0.6 on it. Boxes are exact or disjoint, so every IoU
    # threshold gives the same AP.
    image1 = [
        [0, 0, 10, 10, 0.9, 0],
        [70, 70, 80, 80, 0.8, 0],
        [20, 20, 30, 30, 0.7, 0],
        [200, 200, 210, 210, 0.95, 1],
        [300, 300, 310, 310, 0.85, 1],
    ]
    targets1 = [[0, 0, 10, 10, 0], [20, 20, 30, 30, 0], [200, 200, 210, 210, 1]]
    dets, targets = [np.array(image1), np.array([[50, 50, 60, 60, 0.6, 0]])], [targets1, [[50, 50, 60, 60, 0]]]
    # top_k 2: class 0 of image 1 keeps 0.9 and 0.8 (0.7 is ignored: it keeps its rank, neither TP nor FP);
    # image 2 keeps its own. Class 0, 3 targets: ranks 0.9 TP, 0.8 FP, 0.7 -, 0.6 TP -> recall 1/3, 1/3, 1/3,
    # 2/3; monotone precision 1, 2/3, 2/3, 2/3. Recall points 0 ... 0.33 (34) sample 1, 0.34 ... 0.66 (33)
    # sample 2/3, 0.67 ... 1 (34) sample 0: AP = (34 + 22) / 101. Class 1: TP first, AP = 1.
    two = sg_evaluate(dets, targets, num_classes=2, top_k=2)
    assert two.ap[:, 0].tolist() == pytest.approx([56 / 101, 1.0], abs=1e-6)
    # top_k 3: 0.7 is a TP: recall 1/3, 1/3, 2/3, 1; monotone precision 1, 3/4, 3/4, 3/4: AP = (34 + 67 * 3/4)
    # / 101. (A per-image top-k of 2 would keep only class 1's two detections in image 1.)
    three = sg_evaluate(dets, targets, num_classes=2, top_k=3)
    assert three.ap[:, 0].tolist() == pytest.approx([(34 + 67 * 0.75) / 101, 1.0], abs=1e-6)
    assert three.map == pytest.approx(((34 + 67 * 0.75) / 101 + 1) / 2, abs=1e-6)
    # A detection of confidence 0 never takes part: alone on its target it would score AP 1, it scores 0.
    assert one_image([[0, 0, 10, 10, 0.0, 0]], [[0, 0, 10, 10, 0]]).map == 0.0
    assert one_image([[0, 0, 10, 10, 0.01, 0]], [[0, 0, 10, 10, 0]]).map == 1.0


def test_recall_landing_on_a_float32_grid_step_samples_there():
    # The recall grid: step float32(0.01) = 0.00999999977648258; point 70 = 1 - 30 * step, rounded once to
    # float32 = 0.69999998807907 = float32(0.7); point 10 = 10 * step = 0.0999999977648258 exactly halfway
    # between two float32 values, rounded to the even one, 0.099999994 (one step below float32(0.1)).
    assert SG_RECALL_POINTS[70] == np.float32(0.7)
    assert SG_RECALL_POINTS[10] == np.nextafter(np.float32(0.1), np.float32(0))
    assert linspace32(0.5, 0.95, 10).tolist() == SG_IOU_THRESHOLDS.tolist()
    # One class, 10 targets; detections: 7 exact hits, a miss, an 8th hit. Recall 0.1 ... 0.7, 0.7, 0.8;
    # monotone precision 1 (ranks 1-7), 8/9 (ranks 8-9). In float32 the 7th recall 7/10 equals point 70, so
    # points 0 ... 0.70 (71) sample 1 and 0.71 ... 0.80 (10) sample 8/9: AP = (71 + 80/9) / 101. In float64
    # (pycocotools: 0.7 < 0.7000000000000001) point 70 would sample 8/9: (70 + 88/9) / 101.
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(10)]
    det = [[*boxes[i], 0.99 - 0.01 * i, 0] for i in range(7)] + [[0, 100, 10, 110, 0.5, 0], [*boxes[7], 0.4, 0]]
    result = one_image(det, [[*b, 0] for b in boxes], iou_thresholds=[0.5])
    assert result.map == pytest.approx((71 + 80 / 9) / 101, abs=1e-6)
    assert abs(result.map - (70 + 88 / 9) / 101) > 1e-3


def test_its_precision_recall_f1_read_the_monotone_precision_at_the_score_threshold():
    # 2 targets; detections 0.9 on one, 0.3 nowhere, 0.05 on the other. At confidence >= 0.1 (two detections):
    # recall 1/2, precision raw 1/2 but monotone max(1/2, 2/3) = 2/3 (the third rank's 2/3 counts);
    # F1 = 2 (2/3)(1/2) / (2/3 + 1/2) = 4/7. Every threshold alike, so the means are these values.
    det = [[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.3, 0], [20, 20, 30, 30, 0.05, 0]]
    result = one_image(det, [[0, 0, 10, 10, 0], [20, 20, 30, 30, 0]])
    assert (result.precision, result.recall, result.f1) == pytest.approx((2 / 3, 1 / 2, 4 / 7), abs=1e-6)


def test_best_score_threshold_is_the_grid_confidence_of_the_best_f1():
    # 2 targets; detections 0.9 hit, 0.6 hit, 0.3 miss, 0.2 miss. F1 of the detections with confidence >= c:
    # c <= 0.2: P 1/2, R 1 -> 2/3; 0.2 < c <= 0.3: P 2/3, R 1 -> 0.8; 0.3 < c <= 0.6: P 1, R 1 -> 1;
    # 0.6 < c <= 0.9: P 1, R 1/2 -> 2/3; above: 0. Grid point 30 is 0.29999998 <= float32(0.3), so the first
    # grid confidence above 0.3 is point 31: 0.31.
    det = [[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.6, 0], [50, 50, 60, 60, 0.3, 0], [70, 70, 80, 80, 0.2, 0]]
    result = one_image(det, [[0, 0, 10, 10, 0], [20, 20, 30, 30, 0]])
    assert result.best_score_threshold == pytest.approx(0.31, abs=1e-7)
    assert (result.precision, result.recall, result.f1) == pytest.approx((1 / 2, 1, 2 / 3), abs=1e-6)


def test_an_ignored_detection_keeps_its_rank():
    # One target. Detection A (0.9) lies inside a crowd box of its class (ignored); B (0.05) hits the target.
    # At confidence >= 0.1 only A's rank counts: recall 0, raw precision 0 / (0 + 2.2e-16) = 0, but the
    # monotone precision at that rank is max(0, B's 1) = 1: P 1, R 0, F1 0 (dropping A would give P 0).
    det = [[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.05, 0]]
    result = one_image(det, [[50, 50, 60, 60, 0]], [[0, 0, 20, 20, 0]])
    assert (result.precision, result.recall, result.f1) == (1.0, 0.0, 0.0)
    assert result.map == 1.0  # recall 1 at B with precision 1


def test_no_targets_scores_zero_and_bad_arrays_are_usage_errors():
    empty = sg_evaluate([np.zeros((0, 6))], [np.zeros((0, 5))], num_classes=3)
    assert (empty.map, empty.precision, len(empty.classes)) == (0.0, 0.0, 0)
    with pytest.raises(UsageError, match=r"detections of image 0 must be an array \[N, 6\]"):
        sg_evaluate([np.zeros((2, 5))], [np.zeros((0, 5))], num_classes=3)
    with pytest.raises(UsageError, match=r"targets of image 0 has a class id outside 0\.\.2"):
        sg_evaluate([np.zeros((0, 6))], [[[0, 0, 1, 1, 3]]], num_classes=3)
    with pytest.raises(UsageError, match="same images; got 2, 1 and 1"):
        sg_evaluate([np.zeros((0, 6))] * 2, [np.zeros((0, 5))], num_classes=3)


# ---------------------------------------------------------------------------------------- against pycocotools


def random_scene(rng: np.random.Generator, n_images: int, nc: int, canvas: int) -> list[tuple[np.ndarray, Labels]]:
    """Images with 0-5 targets (15 % crowd), jittered hits, wrong classes and misses, detections inside the
    canvas, all confidences distinct."""
    scenes = []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (n, 2))], 1)
        gt = Labels.from_xyxy(rng.integers(0, nc, n), boxes, crowd=rng.uniform(size=n) < 0.15)
        dets = []
        for box, c in zip(boxes, gt.cls):
            for _ in range(int(rng.integers(0, 3))):
                x1, y1, x2, y2 = box + rng.normal(0, 6, 4)
                dets.append(
                    [
                        min(x1, x2),
                        min(y1, y2),
                        max(x1, x2) + 1,
                        max(y1, y2) + 1,
                        0,
                        c if rng.uniform() < 0.85 else (c + 1) % nc,
                    ]
                )
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 200, 2)
            dets.append([x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60), 0, rng.integers(0, nc)])
        det = np.array(dets, dtype=np.float64).reshape(-1, 6)
        det[:, :4] = det[:, :4].clip(0, canvas)  # inside the canvas: the original's clipping changes nothing
        scenes.append((det, gt))
    scores = rng.permutation(sum(len(d) for d, _ in scenes)) + 1.0
    start = 0
    for det, _ in scenes:
        det[:, 4] = scores[start : start + len(det)] / (len(scores) + 2)
        start += len(det)
    return scenes


def test_equals_pycocotools_where_the_definitions_coincide():
    """Detections inside the canvas, at most 100 per class per image, no area ranges, no class with 10, 20 ...
    targets (whose recall lands on the grid): then the original's definition and COCOeval's (area all,
    maxDets 100) are the same computation, crowd boxes included; only float32 rounding differs."""
    rng = np.random.default_rng(7)
    nc, canvas = 3, 300
    scenes = random_scene(rng, 12, nc, canvas)
    gt = CocoGroundTruth({i: str(i) for i in range(nc)}, [1, 2, 3])
    preds, targets, crowd = [], [], []
    for image_id, (det, lab) in enumerate(scenes, 1):
        rows = np.concatenate([lab.boxes, lab.cls[:, None]], 1)
        targets.append(rows[~lab.crowd])
        crowd.append(rows[lab.crowd])
        gt.add(image_id, f"{image_id}.jpg", (canvas, canvas), Labels(lab.cls, lab.boxes, lab.crowd, np.ones(len(lab))))
        preds += [
            {"image_id": image_id, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            for x1, y1, x2, y2, s, c in det.tolist()
        ]
    assert 10 not in np.bincount(np.concatenate([t[:, 4] for t in targets]).astype(int))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt.to_dict()
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(preds), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    result = sg_evaluate([d for d, _ in scenes], targets, crowd, num_classes=nc, canvas_hw=(canvas, canvas))
    # 1e-6: float32 boxes, IoU and precision against pycocotools' float64 (measured: 2.3e-8 at most here)
    assert result.map == pytest.approx(ev.stats[0], abs=1e-6)
    assert result.map50 == pytest.approx(ev.stats[1], abs=1e-6)
    assert result.map75 == pytest.approx(ev.stats[2], abs=1e-6)


# ---------------------------------------------------------------------------------------- val protocol=sg


def write_image_and_labels(root: Path, stem: str, hw: tuple[int, int], boxes: list[tuple[int, ...]]) -> None:
    """A grey image and its YOLO label file (class, xc, yc, w, h normalised, at full float precision)."""
    h, w = hw
    cv2.imwrite(str(root / "images" / "val" / f"{stem}.png"), np.full((h, w, 3), 90, np.uint8))
    lines = [
        f"{c} {(x1 + x2) / 2 / w!r} {(y1 + y2) / 2 / h!r} {(x2 - x1) / w!r} {(y2 - y1) / h!r}"
        for c, x1, y1, x2, y2 in boxes
    ]
    (root / "labels" / "val" / f"{stem}.txt").write_text("\n".join(lines) + "\n")


def test_val_protocol_sg_prints_and_saves_both_definitions(tmp_path, tiny_checkpoint, monkeypatch):
    """Two images sized so that at imgsz=96 the original's letterbox is the identity (95x95: no resize, no pad)
    or a 1-pixel shift (94x95), with detections injected at the engine's postprocess seam.

    Class 0 (image 1): targets [10,10,50,50] and [60,20,95,70] (touching the right edge); detections 0.9 on the
    first, 0.6 = [60,20,100,70] (past the 96-pixel canvas: clipped to 96, IoU 35/36 = 0.97 at every threshold),
    0.3 nowhere. Ranks TP, TP, FP: AP 1; at confidence >= 0.1 P = 2/3, R = 1, F1 = 0.8.
    Class 2 (image 2): target [20,20,60,60]; detections 0.5 nowhere, 0.4 on it: AP 1/2 (precision 1/2 at every
    recall point); P = 1/2, R = 1, F1 = 2/3.
    mAP = mAP50 = mAP75 = 3/4; P = 7/12, R = 1, F1 = (0.8 + 2/3) / 2 = 11/15. Mean F1 over classes by
    confidence c: 11/15 up to 0.3, (1 + 2/3)/2 = 5/6 on (0.3, 0.4], less above: best score threshold 0.31."""
    root = tmp_path / "ds"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    write_image_and_labels(root, "a", (95, 95), [(0, 10, 10, 50, 50), (0, 60, 20, 95, 70)])
    write_image_and_labels(root, "b", (94, 95), [(2, 20, 20, 60, 60)])
    spec = {"path": ".", "val": "images/val", "names": dict(enumerate(COCO80_NAMES))}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    dets = {
        (95, 95): [[10, 10, 50, 50, 0.9, 0], [60, 20, 100, 70, 0.6, 0], [5, 60, 35, 90, 0.3, 0]],
        (94, 95): [[65, 65, 90, 90, 0.5, 2], [20, 20, 60, 60, 0.4, 2]],
    }

    def injected(self, raw, letterboxes):  # type: ignore[no-untyped-def]
        return [np.array(dets[tuple(lb.orig_hw)], np.float32) for lb in letterboxes]

    monkeypatch.setattr(Engine, "postprocess", injected)
    out = CliRunner().invoke(
        app,
        [
            "val",
            f"model={tiny_checkpoint}",
            f"data={root / 'data.yaml'}",
            "imgsz=96",
            "protocol=sg",
            "plots=False",
            "device=cpu",
            f"project={tmp_path / 'runs'}",
        ],
    )
    assert out.exit_code == 0, out.output
    saved = json.loads((tmp_path / "runs" / "val" / "metrics.json").read_text())
    sg, ultralytics = saved["sg"], saved["all"]
    assert (sg["mAP50-95"], sg["mAP50"], sg["mAP75"]) == pytest.approx((0.75, 0.75, 0.75), abs=1e-6)
    assert (sg["precision"], sg["recall"], sg["f1"]) == pytest.approx((7 / 12, 1.0, 11 / 15), abs=1e-6)
    assert sg["best_score_threshold"] == pytest.approx(0.31, abs=1e-7) and sg["score_threshold"] == 0.1
    assert sg["pr_definition"].startswith("the original's") and ultralytics["pr_definition"].startswith("Ultralyt")
    assert "the original's DetectionMetrics mAP50-95 0.7500, mAP50 0.7500 | pycocotools" in out.stderr
    assert "the original's P 0.5833, R 1.0000, F1 0.7333 (its definition: confidence >= 0.1" in out.stderr
    assert "its best score threshold 0.31" in out.stderr
    ultralytics_line = f"Ultralytics-style P {ultralytics['precision']:.4f}, R {ultralytics['recall']:.4f} (the table's"
    assert ultralytics_line in out.stderr
