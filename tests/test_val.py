"""`yolo-nas val` and `validate()`: on a synthetic YOLO-format dataset (drawn shapes, labels, background and
corrupt images) with detections injected through the engine's postprocess seam, the printed and saved mAP
equal pycocotools run independently here on the saved predictions.json and a ground truth built from the
label files; plus category ids, background images, crowd boxes, classes=, outputs and both protocols with the
tiny fixture model."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from yolonas_cli import NAS
from yolonas_cli.cfg import make_args
from yolonas_cli.cli.app import app
from yolonas_cli.core.coco import COCO80_NAMES, COCO80_TO_COCO91
from yolonas_cli.engine.batching import shape_batches
from yolonas_cli.engine.engine import Engine
from yolonas_cli.metrics.evaluate import prefetch
from yolonas_cli.modes.val import HEADER, validate

runner = CliRunner()
CLASSES = (0, 2, 16, 41)
BACKGROUND = (4, 9)  # 4: no label file, 9: an empty one
N_IMAGES = 12
Dets = dict[tuple[int, int], np.ndarray]


# ---------------------------------------------------------------------------------------- the dataset


def _draw_image(rng: np.random.Generator, h: int, w: int, n_boxes: int) -> tuple[np.ndarray, list[str]]:
    img = np.full((h, w, 3), 40, np.uint8)
    lines = []
    for _ in range(n_boxes):
        bw, bh = int(rng.integers(12, w // 2)), int(rng.integers(12, h // 2))
        x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        colour = tuple(int(v) for v in rng.integers(80, 255, 3))
        if rng.uniform() < 0.5:
            cv2.rectangle(img, (x1, y1), (x1 + bw, y1 + bh), colour, -1)
        else:
            cv2.ellipse(img, (x1 + bw // 2, y1 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, colour, -1)
        c = int(rng.choice(CLASSES))
        lines.append(f"{c} {(x1 + bw / 2) / w:.6f} {(y1 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
    return img, lines


def build_dataset(root: Path, names: Any = COCO80_NAMES) -> Path:
    """12 decodable images of unique sizes (two of them background), one corrupt image; returns the YAML."""
    rng = np.random.default_rng(3)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i in range(N_IMAGES):
        h, w = 96 + 8 * i, 176 - 4 * i
        img, lines = _draw_image(rng, h, w, 0 if i in BACKGROUND else 1 + i % 3)
        cv2.imwrite(str(root / "images" / "val" / f"{i + 1:06d}.jpg"), img)
        if i != 4:
            (root / "labels" / "val" / f"{i + 1:06d}.txt").write_text("".join(f"{x}\n" for x in lines))
    (root / "images" / "val" / "000099.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    spec = {"path": ".", "train": "images/val", "val": "images/val", "names": dict(enumerate(names))}
    (root / "syn.yaml").write_text(yaml.safe_dump(spec))
    return root / "syn.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("syn"))


def read_ground_truth(yaml_path: Path) -> list[dict[str, Any]]:
    """Per decodable image: id, size and label rows (class, xc, yc, w, h), read straight from the files."""
    root = yaml_path.parent
    out = []
    for img_path in sorted((root / "images" / "val").glob("*.jpg")):
        img = cv2.imread(str(img_path))
        if img is None:
            continue
        label = root / "labels" / "val" / f"{img_path.stem}.txt"
        text = label.read_text() if label.exists() else ""
        rows = [list(map(float, line.split())) for line in text.splitlines()]
        out.append(
            {"id": int(img_path.stem), "h": img.shape[0], "w": img.shape[1], "rows": rows, "file": img_path.name}
        )
    return out


def gt_boxes(entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(class ids [N], xyxy pixels [N, 4]) of one ground-truth entry."""
    rows = np.array(entry["rows"], dtype=np.float64).reshape(-1, 5)
    w, h = entry["w"], entry["h"]
    xc, yc, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    return rows[:, 0].astype(int), np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], 1)


def coco_gt_json(truth: list[dict[str, Any]]) -> dict[str, Any]:
    """A COCO ground truth built independently of yolonas_cli (COCO's 1..90 category ids)."""
    anns = []
    for e in truth:
        for c, xc, yc, bw, bh in e["rows"]:
            w, h = bw * e["w"], bh * e["h"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": e["id"],
                    "category_id": COCO80_TO_COCO91[int(c)],
                    "bbox": [xc * e["w"] - w / 2, yc * e["h"] - h / 2, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {
        "images": [{"id": e["id"], "height": e["h"], "width": e["w"], "file_name": e["file"]} for e in truth],
        "annotations": anns,
        "categories": [{"id": COCO80_TO_COCO91[i], "name": n} for i, n in enumerate(COCO80_NAMES)],
    }


def pycocotools_stats(
    gt: dict[str, Any], predictions: list[dict[str, Any]], cat_ids: list[int] | None = None
) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(predictions), "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


# ---------------------------------------------------------------------------------------- injection


def noisy_detections(truth: list[dict[str, Any]], seed: int = 5) -> Dets:
    """Known detections per image size: jittered true boxes, duplicates, wrong classes and false positives
    (background images included), distinct confidences, in decreasing confidence."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in truth:
        cls, boxes = gt_boxes(e)
        rows = []
        for c, box in zip(cls, boxes):
            if rng.uniform() < 0.85:
                rows.append([*(box + rng.normal(0, 2.5, 4)), rng.uniform(0.3, 0.99), c])
            if rng.uniform() < 0.3:
                rows.append([*(box + rng.normal(0, 6, 4)), rng.uniform(0.05, 0.5), c])
            if rng.uniform() < 0.25:
                rows.append([*box, rng.uniform(0.05, 0.9), CLASSES[(CLASSES.index(c) + 1) % len(CLASSES)]])
        x, y = rng.uniform(0, e["w"] / 2), rng.uniform(0, e["h"] / 2)
        rows.append([x, y, x + 20, y + 15, rng.uniform(0.01, 0.7), rng.choice(CLASSES)])
        det = np.array(rows, dtype=np.float32).reshape(-1, 6)
        det[:, [0, 2]] = det[:, [0, 2]].clip(0, e["w"])
        det[:, [1, 3]] = det[:, [1, 3]].clip(0, e["h"])
        out[(e["h"], e["w"])] = det[np.argsort(-det[:, 4], kind="stable")]
    return out


def perfect_detections(truth: list[dict[str, Any]]) -> Dets:
    out = {}
    for e in truth:
        cls, boxes = gt_boxes(e)
        conf = np.linspace(0.9, 0.5, len(cls)) if len(cls) else np.zeros(0)
        out[(e["h"], e["w"])] = np.concatenate([boxes, conf[:, None], cls[:, None]], 1).astype(np.float32)
    return out


@pytest.fixture()
def inject(monkeypatch: pytest.MonkeyPatch):
    """inject(dets): the engines' postprocess stage (both protocols) returns `dets[image (h, w)]`, filtered
    by the engine's classes as the real stage does; the model still runs."""

    def install(dets: Dets) -> None:
        def fake_postprocess(self, raw, letterboxes):  # type: ignore[no-untyped-def]
            chosen = [dets[tuple(lb.orig_hw)].copy() for lb in letterboxes]
            wanted = self.settings.classes
            return [d if wanted is None else d[np.isin(d[:, 5], wanted)] for d in chosen]

        monkeypatch.setattr(Engine, "postprocess", fake_postprocess)

    return install


def cli(tmp_path: Path, *tokens: str):
    result = runner.invoke(app, ["val", *tokens, f"project={tmp_path / 'runs'}", "device=cpu"])
    assert result.exit_code == 0, result.output
    return result


# ---------------------------------------------------------------------------------------- acceptance


def test_printed_and_saved_map_equal_independent_pycocotools(dataset, tiny_checkpoint, tmp_path, inject):
    truth = read_ground_truth(dataset)
    inject(noisy_detections(truth))
    out = cli(tmp_path, f"model={tiny_checkpoint}", f"data={dataset}", "imgsz=96", "batch=4", "save_json", "save_txt")
    run_dir = tmp_path / "runs" / "val"
    predictions = json.loads((run_dir / "predictions.json").read_text())
    stats = pycocotools_stats(coco_gt_json(truth), predictions)
    assert 0.2 < stats[0] < 0.95  # a meaningful, not a trivial, score
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["all"]["mAP50-95"] == pytest.approx(stats[0], abs=1e-6)
    assert saved["all"]["mAP50"] == pytest.approx(stats[1], abs=1e-6)
    assert saved["all"]["mAP75"] == pytest.approx(stats[2], abs=1e-6)
    lines = out.stdout.splitlines()
    assert HEADER in lines
    all_row = next(line for line in lines if line.split()[0] == "all").split()
    assert all_row[1:3] == [str(N_IMAGES), str(sum(len(e["rows"]) for e in truth))]
    assert float(all_row[5]) == pytest.approx(stats[1], abs=5e-4 * max(1, stats[1]))
    assert float(all_row[6]) == pytest.approx(stats[0], abs=5e-4)
    assert saved["images"] == N_IMAGES and saved["skipped_images"] == 1
    assert "000099.jpg" in out.stderr and "Speed:" in out.stderr and "Results saved to" in out.stderr
    assert {p["category_id"] for p in predictions} <= {COCO80_TO_COCO91[c] for c in CLASSES}
    assert {p["image_id"] for p in predictions} == {e["id"] for e in truth}  # background images included
    for name in ("BoxPR_curve.png", "confusion_matrix.png"):
        assert cv2.imread(str(run_dir / name)) is not None
    label_files = sorted(p.stem for p in (run_dir / "labels").glob("*.txt"))
    assert label_files == [f"{e['id']:06d}" for e in truth]
    first = (run_dir / "labels" / f"{truth[0]['id']:06d}.txt").read_text().splitlines()[0].split()
    assert len(first) == 6  # class xc yc w h conf


def test_per_class_rows_and_python_api(dataset, tiny_checkpoint, tmp_path, inject):
    truth = read_ground_truth(dataset)
    inject(noisy_detections(truth))
    args = make_args(
        "val",
        project=str(tmp_path / "runs"),
        model=str(tiny_checkpoint),
        data=str(dataset),
        imgsz=96,
        batch=5,
        plots=False,
        device="cpu",
        workers=0,
    )
    metrics = validate(NAS(tiny_checkpoint), args)
    present = sorted({int(r[0]) for e in truth for r in e["rows"]})
    assert metrics.box.ap_class_index.tolist() == present
    stats = pycocotools_stats(coco_gt_json(truth), _predictions_of(truth, noisy_detections(truth)))
    assert metrics.box.map == pytest.approx(stats[0], abs=1e-6)
    assert metrics.box.map50 == pytest.approx(stats[1], abs=1e-6)
    assert metrics.box.maps.shape == (80,) and metrics.box.maps[1] == metrics.box.map
    assert set(metrics.results_dict) == {
        "metrics/precision(B)",
        "metrics/recall(B)",
        "metrics/mAP50(B)",
        "metrics/mAP50-95(B)",
        "fitness",
    }
    assert set(metrics.speed) == {"preprocess", "inference", "loss", "postprocess"}
    assert 0 < metrics.box.mp <= 1 and 0 < metrics.box.mr <= 1
    assert metrics.save_dir is not None and (metrics.save_dir / "metrics.json").is_file()
    counts = np.bincount([int(r[0]) for e in truth for r in e["rows"]], minlength=80)
    assert metrics.box.instances.tolist() == counts.tolist()


def _predictions_of(truth: list[dict[str, Any]], dets: Dets) -> list[dict[str, Any]]:
    """What predictions.json must hold for `dets` (rounded as the COCO results format is written)."""
    out = []
    for e in truth:
        for x1, y1, x2, y2, s, c in dets[(e["h"], e["w"])].astype(np.float64).tolist():
            out.append(
                {
                    "image_id": e["id"],
                    "category_id": COCO80_TO_COCO91[int(c)],
                    "score": round(s, 5),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                }
            )
    return out


def test_perfect_detections_score_one_and_background_false_positives_count(dataset, tiny_checkpoint, tmp_path, inject):
    truth = read_ground_truth(dataset)
    dets = perfect_detections(truth)
    inject(dets)
    args = make_args(
        "val",
        project=str(tmp_path / "runs"),
        model=str(tiny_checkpoint),
        data=str(dataset),
        imgsz=96,
        plots=False,
        device="cpu",
    )
    perfect = validate(NAS(tiny_checkpoint), args)
    assert perfect.box.map == pytest.approx(1.0) and perfect.box.mp == pytest.approx(1.0)
    assert perfect.box.mr == pytest.approx(1.0, abs=1e-6)
    background = truth[BACKGROUND[0]]
    dets[(background["h"], background["w"])] = np.array([[5, 5, 40, 40, 0.95, CLASSES[1]]], np.float32)
    inject(dets)
    hurt = validate(NAS(tiny_checkpoint), args)
    stats = pycocotools_stats(coco_gt_json(truth), _predictions_of(truth, dets))
    assert hurt.box.map < 1.0 and hurt.box.map == pytest.approx(stats[0], abs=1e-6)


def test_classes_filter_restricts_predictions_and_ground_truth(dataset, tiny_checkpoint, tmp_path, inject):
    truth = read_ground_truth(dataset)
    inject(noisy_detections(truth))
    cli(
        tmp_path,
        f"model={tiny_checkpoint}",
        f"data={dataset}",
        "imgsz=96",
        "classes=[2,16]",
        "save_json",
        "plots=False",
    )
    run_dir = tmp_path / "runs" / "val"
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert {p["category_id"] for p in predictions} <= {3, 18}
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert [c["class"] for c in saved["classes"]] == [2, 16]
    stats = pycocotools_stats(coco_gt_json(truth), predictions, cat_ids=[3, 18])
    assert saved["all"]["mAP50-95"] == pytest.approx(stats[0], abs=1e-6)
    assert saved["instances"] == sum(1 for e in truth for r in e["rows"] if int(r[0]) in (2, 16))


def test_coco_json_ground_truth_with_crowd_boxes(tmp_path, tiny_checkpoint, inject):
    yaml_path = build_dataset(tmp_path / "ds")
    truth = read_ground_truth(yaml_path)
    gt = coco_gt_json(truth)
    target = truth[BACKGROUND[1]]
    gt["annotations"].append(
        {"id": 999, "image_id": target["id"], "category_id": 1, "bbox": [10, 10, 60, 50], "area": 2500.0, "iscrowd": 1}
    )
    (tmp_path / "ds" / "instances_val.json").write_text(json.dumps(gt))
    spec = yaml.safe_load(yaml_path.read_text())
    yaml_path.write_text(yaml.safe_dump({**spec, "annotations": {"val": "instances_val.json"}}))
    dets = perfect_detections(truth)
    dets[(target["h"], target["w"])] = np.array([[15, 15, 40, 40, 0.97, 0]], np.float32)  # on the crowd box
    inject(dets)
    args = make_args(
        "val",
        project=str(tmp_path / "runs"),
        model=str(tiny_checkpoint),
        data=str(yaml_path),
        imgsz=96,
        plots=False,
        device="cpu",
    )
    metrics = validate(NAS(tiny_checkpoint), args)
    stats = pycocotools_stats(gt, _predictions_of(truth, dets))
    assert metrics.box.map == pytest.approx(stats[0], abs=1e-6) and stats[0] == pytest.approx(1.0)
    assert metrics.box.mp == pytest.approx(1.0)  # the detection on the crowd box is ignored, not a FP
    assert metrics.box.instances[0] == sum(1 for e in truth for r in e["rows"] if int(r[0]) == 0)


# ---------------------------------------------------------------------------------------- the real model


def test_real_model_both_protocols_and_rect(dataset, tiny_checkpoint, tmp_path):
    model, data = f"model={tiny_checkpoint}", f"data={dataset}"
    out = cli(tmp_path, model, data, "imgsz=160", "batch=4", "rect", "save_json")
    saved = json.loads((tmp_path / "runs" / "val" / "metrics.json").read_text())
    stats = pycocotools_stats(
        coco_gt_json(read_ground_truth(dataset)),
        json.loads((tmp_path / "runs" / "val" / "predictions.json").read_text()),
    )
    assert saved["all"]["mAP50-95"] == pytest.approx(max(stats[0], 0), abs=1e-6) and saved["sg"] is None
    assert HEADER in out.stdout
    sg = cli(tmp_path, model, data, "imgsz=160", "protocol=sg", "plots=False")
    saved = json.loads((tmp_path / "runs" / "val2" / "metrics.json").read_text())
    assert set(saved["sg"]) == {
        "mAP50-95",
        "mAP50",
        "mAP75",
        "precision",
        "recall",
        "f1",
        "score_threshold",
        "best_score_threshold",
        "pr_definition",
    }
    assert re.search(r"DetectionMetrics mAP50-95 \d\.\d{4}, mAP50 \d\.\d{4} \| pycocotools", sg.stderr)
    assert "published at imgsz=640" in sg.stderr


# ---------------------------------------------------------------------------------------- edge cases


def test_no_labels_warns_and_scores_zero(tmp_path, tiny_checkpoint, inject):
    yaml_path = build_dataset(tmp_path / "ds")
    for f in (tmp_path / "ds" / "labels" / "val").glob("*.txt"):
        f.unlink()
    inject(noisy_detections(read_ground_truth(yaml_path)))  # false positives only
    args = make_args(
        "val",
        project=str(tmp_path / "runs"),
        model=str(tiny_checkpoint),
        data=str(yaml_path),
        imgsz=96,
        plots=False,
        device="cpu",
        verbose=False,
    )
    metrics = validate(NAS(tiny_checkpoint), args)
    assert metrics.box.map == 0 and metrics.seen == N_IMAGES and len(metrics.box.ap_class_index) == 0


def test_class_count_mismatch_is_a_usage_error(tmp_path, tiny_checkpoint):
    yaml_path = build_dataset(tmp_path / "ds", names=["a", "b"])
    result = runner.invoke(app, ["val", f"model={tiny_checkpoint}", f"data={yaml_path}", "device=cpu"])
    assert result.exit_code == 2 and "2 classes but the model has 80" in result.stderr


def test_prefetch_keeps_order_and_batches_split_on_shape():
    loaded = list(prefetch(lambda i: i * i, 20, workers=3, depth=4))
    assert loaded == [i * i for i in range(20)]
    shapes = [(2, 2), (2, 2), (2, 2), (4, 2), (4, 2), (4, 2), (2, 2)]
    groups = list(shape_batches(iter(shapes), 2, lambda shape: shape))
    assert groups == [[(2, 2), (2, 2)], [(2, 2)], [(4, 2), (4, 2)], [(4, 2)], [(2, 2)]]


def test_sg_protocol_equals_pycocotools_on_injected_detections(dataset, tiny_checkpoint, tmp_path, inject):
    """Mapped into the 96x96 input space the IoUs do not change, and with <= 100 detections per class per
    image and no area ranges the original's metric and COCOeval coincide: the two printed numbers agree."""
    truth = read_ground_truth(dataset)
    inject(noisy_detections(truth))
    args = make_args(
        "val",
        project=str(tmp_path / "runs"),
        model=str(tiny_checkpoint),
        data=str(dataset),
        imgsz=96,
        protocol="sg",
        plots=False,
        device="cpu",
    )
    metrics = validate(NAS(tiny_checkpoint), args)
    assert metrics.sg is not None and 0.2 < metrics.box.map < 0.95
    assert metrics.sg["mAP50-95"] == pytest.approx(metrics.box.map, abs=1e-6)
    assert metrics.sg["mAP50"] == pytest.approx(metrics.box.map50, abs=1e-6)


def test_nas_val_method_is_the_same_validation(dataset, tiny_checkpoint, tmp_path, inject):
    truth = read_ground_truth(dataset)
    inject(noisy_detections(truth))
    metrics = NAS(tiny_checkpoint).val(
        data=str(dataset), imgsz=96, batch=5, plots=False, device="cpu", project=str(tmp_path / "runs"), verbose=False
    )
    stats = pycocotools_stats(coco_gt_json(truth), _predictions_of(truth, noisy_detections(truth)))
    assert metrics.box.map == pytest.approx(stats[0], abs=1e-6)
    assert metrics.box.map75 == pytest.approx(stats[2], abs=1e-6)


def pycocotools_ap_per_iou(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> dict[int, np.ndarray]:
    """Category id -> AP at each IoU threshold 0.50:0.05:0.95 (area all, 100 detections), from an independent
    COCOeval: the mean of its precision over the recall grid where defined."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(predictions), "bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, list(ev.params.maxDets).index(100)]  # [T, R, K]
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        rows = precision[:, :, k]
        if (rows > -1).any():
            out[cat] = np.array([row[row > -1].mean() for row in rows])
    return out


def test_metrics_object_has_ultralytics_detmetrics_api(dataset, tiny_checkpoint, tmp_path, inject):
    """all_ap against an independent COCOeval per class and IoU; f1, mean_results, summary, to_csv/to_json/to_df,
    curves and the confusion matrix against the numbers they are defined from."""
    truth = read_ground_truth(dataset)
    inject(noisy_detections(truth))
    metrics = NAS(tiny_checkpoint).val(
        data=str(dataset), imgsz=96, batch=5, plots=False, device="cpu", project=str(tmp_path / "runs"), verbose=False
    )
    box = metrics.box
    expected = pycocotools_ap_per_iou(coco_gt_json(truth), _predictions_of(truth, noisy_detections(truth)))
    assert box.all_ap.shape == (len(box.ap_class_index), 10)
    for row, c in zip(box.all_ap, box.ap_class_index):
        np.testing.assert_allclose(row, expected[COCO80_TO_COCO91[int(c)]], atol=1e-9)
    np.testing.assert_allclose(box.all_ap.mean(1), box.ap, atol=1e-9)
    np.testing.assert_allclose(box.all_ap[:, 0], box.ap50, atol=1e-9)
    np.testing.assert_allclose(box.f1, 2 * box.p * box.r / (box.p + box.r + 1e-16), atol=1e-9)
    assert metrics.mean_results() == box.mean_results() == [box.mp, box.mr, box.map50, box.map]
    assert box.fitness() == pytest.approx(0.1 * box.map50 + 0.9 * box.map) == metrics.fitness
    assert metrics.class_result(0) == (box.p[0], box.r[0], box.ap50[0], box.ap[0])

    rows = metrics.summary()
    assert [r["Class"] for r in rows] == [COCO80_NAMES[int(c)] for c in box.ap_class_index]
    counts = np.bincount([int(r[0]) for e in truth for r in e["rows"]], minlength=80)
    assert [r["Instances"] for r in rows] == [int(counts[c]) for c in box.ap_class_index]
    assert [r["mAP50-95"] for r in rows] == pytest.approx(box.ap.tolist(), abs=1e-5)
    assert [r["Box-F1"] for r in rows] == pytest.approx(box.f1.tolist(), abs=1e-5)
    assert json.loads(metrics.to_json()) == rows
    csv_lines = metrics.to_csv().splitlines()
    assert (
        csv_lines[0] == "Class,Images,Instances,Box-P,Box-R,Box-F1,mAP50,mAP50-95" and len(csv_lines) == len(rows) + 1
    )
    frame = metrics.to_df()
    assert frame["mAP50"].tolist() == [r["mAP50"] for r in rows]

    assert metrics.curves == [
        "Precision-Recall(B)",
        "F1-Confidence(B)",
        "Precision-Confidence(B)",
        "Recall-Confidence(B)",
    ]
    curves = metrics.curves_results
    assert [c[2:] for c in curves] == [
        ["Recall", "Precision"],
        ["Confidence", "F1"],
        ["Confidence", "Precision"],
        ["Confidence", "Recall"],
    ]
    best = int(np.argmin(np.abs(box.px - box.best_conf)))
    assert all(c[1].shape == (len(box.ap_class_index), 1000) for c in curves)
    np.testing.assert_allclose(curves[1][1][:, best], box.f1)
    np.testing.assert_allclose(curves[2][1][:, best], box.p)
    np.testing.assert_allclose(curves[3][1][:, best], box.r)

    matrix = metrics.confusion_matrix.matrix
    assert matrix.shape == (81, 81)
    assert matrix.sum(0)[:80].tolist() == counts.tolist()  # every true box is predicted as a class or missed
    tp, fp = metrics.confusion_matrix.tp_fp()
    assert tp.tolist() == np.diag(matrix)[:80].tolist() and (fp == matrix[:80].sum(1) - tp).all()
    summary = metrics.confusion_matrix.summary()
    assert summary[-1]["Predicted"] == "background" and summary[0]["person"] == matrix[0, 0]
