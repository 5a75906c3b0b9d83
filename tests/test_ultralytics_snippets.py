"""Typical Ultralytics user code, run unchanged against our objects.

Each snippet is the kind of code the Ultralytics predict and val docs teach (loops over `results[0].boxes`,
`.cpu().numpy()`, class names from `cls`, `plot()` + `cv2.imwrite`, PIL, an OpenCV video loop, `to_df`,
`save_dir`, boolean masks, `metrics.box.map`, ...), written here as text and executed with `exec` with `model`
bound to `NAS(...)` where the user would have `YOLO("yolo11n.pt")`, and the example photos being the bundled
ones (`rocket.jpg`, `coffee.png`, ...; a bare bundled name works from any folder). README.md shows the same
texts (a test checks that it does).

The model is YOLO-NAS S with the fixture formula weights, at the default predict settings (imgsz 640, conf
0.25, iou 0.7): what the snippets compute is checked against the original SuperGradients pipeline's
detections for those photos (tests/fixtures/yolo_nas_s_predict.json), not against our own output.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from formula import FIXTURES
from yolonas_cli import NAS
from yolonas_cli.core.coco import COCO80_NAMES
from yolonas_cli.data.sources import default_source

README = Path(__file__).resolve().parents[1] / "README.md"
BOX_TOL, SCORE_TOL = 0.05, 1e-4  # px and score, as tests/test_predict.py's parity test (measured 2.2e-4 / 4e-6)

SNIPPETS = {
    "loop_over_boxes": """
results = model(["rocket.jpg", "coffee.png"])
rows = []
for result in results:
    for box in result.boxes:
        x1, y1, x2, y2 = box.xyxy[0].tolist()
        rows.append((result.names[int(box.cls)], float(box.conf), x1, y1, x2, y2))
""",
    "cpu_numpy": """
result = model("rocket.jpg")[0]
xyxy = result.boxes.xyxy.cpu().numpy()
conf = result.boxes.conf.cpu().numpy()
cls = result.boxes.cls.cpu().numpy().astype(int)
""",
    "class_names": """
results = model("coffee.png")
names = [results[0].names[c.item()] for c in results[0].boxes.cls.int()]
ids = results[0].boxes.cls.int().tolist()
""",
    "box_formats": """
for r in model("astronaut.png"):
    xywh, xywhn = r.boxes.xywh, r.boxes.xywhn
    xyxy, xyxyn = r.boxes.xyxy, r.boxes.xyxyn
    confs = r.boxes.conf
""",
    "generic_attributes": """
for r in model("rocket.jpg", stream=True):
    boxes, masks, keypoints, probs, obb = r.boxes, r.masks, r.keypoints, r.probs, r.obb
    saved = r.save(filename="result.jpg")
""",
    "plot_and_imwrite": """
import cv2

results = model("coffee.png")
annotated = results[0].plot()
cv2.imwrite("annotated.jpg", annotated)
""",
    "plot_to_pil": """
from PIL import Image

for i, r in enumerate(model(["rocket.jpg", "astronaut.png"])):
    im_bgr = r.plot()
    im_rgb = Image.fromarray(im_bgr[..., ::-1])
    r.save(filename=f"results{i}.jpg")
""",
    "opencv_video_loop": """
import cv2

cap = cv2.VideoCapture(video_path)
frames = []
while cap.isOpened():
    ok, frame = cap.read()
    if not ok:
        break
    results = model(frame, verbose=False)
    frames.append(results[0].plot())
cap.release()
""",
    "dataframe_json_csv": """
results = model("rocket.jpg")
df = results[0].to_df()
as_json = results[0].to_json()
as_csv = results[0].to_csv()
""",
    "save_and_save_dir": """
results = model.predict("coffee.png", save=True, save_txt=True, conf=0.3)
run_dir = results[0].save_dir
""",
    "mask_and_count": """
from collections import Counter

r = model("coffee.png")[0]
confident = r.boxes[r.boxes.conf > 0.3]
counts = Counter(r.names[int(c)] for c in r.boxes.cls)
""",
    "labels_and_crops": """
r = model("astronaut.png")[0]
r.save_txt("astronaut.txt", save_conf=True)
crops = r.save_crop(save_dir="crops", file_name="astronaut")
""",
    "val_metrics": """
metrics = model.val(data=data_yaml)
overall = (metrics.box.map, metrics.box.map50, metrics.box.map75)
per_class = metrics.box.maps
keys = metrics.results_dict
""",
    "val_metrics_details": """
metrics = model.val(data=data_yaml, plots=False)
p, r, map50, map5095 = metrics.mean_results()
table = metrics.to_df()
curve_names = metrics.curves
f1, all_ap = metrics.box.f1, metrics.box.all_ap
matrix = metrics.confusion_matrix.matrix
""",
}


# ---------------------------------------------------------------------------------------- helpers


def original(photo: str, conf: float = 0.25) -> dict[str, Any]:
    """The original pipeline's detections of a bundled photo: labels, confidences, boxes (clipped as ours)."""
    entry = json.loads((FIXTURES / "yolo_nas_s_predict.json").read_text())[f"{photo}|conf=0.25|iou=0.7"]
    h, w = entry["image_hw"]
    boxes = np.array(entry["bboxes_xyxy"], dtype=np.float64).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    scores = np.array(entry["confidence"])
    keep = scores > conf
    return {"labels": np.array(entry["labels"])[keep], "scores": scores[keep], "boxes": boxes[keep], "hw": (h, w)}


def run_snippet(name: str, **names: Any) -> dict[str, Any]:
    """Execute a snippet as a user would (its own module namespace) with `names` bound; returns the namespace."""
    namespace: dict[str, Any] = {"__name__": f"snippet_{name}", **names}
    exec(compile(textwrap.dedent(SNIPPETS[name]), f"<snippet {name}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def model(s_checkpoint: Path) -> NAS:
    return NAS(s_checkpoint)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets write relative files; bundled photo names still resolve


def assert_boxes_match(boxes: Any, scores: Any, labels: Any, ref: dict[str, Any]) -> None:
    assert [int(c) for c in labels] == ref["labels"].tolist()
    assert np.abs(np.asarray(scores, np.float64) - ref["scores"]).max(initial=0) <= SCORE_TOL
    assert np.abs(np.asarray(boxes, np.float64).reshape(-1, 4) - ref["boxes"]).max(initial=0) <= BOX_TOL


# ---------------------------------------------------------------------------------------- predict


def test_loop_over_boxes(model) -> None:
    ns = run_snippet("loop_over_boxes", model=model)
    rocket, coffee = original("rocket.jpg"), original("coffee.png")
    rows = ns["rows"]
    assert len(rows) == len(rocket["labels"]) + len(coffee["labels"]) == 28
    expected_names = [COCO80_NAMES[c] for c in [*rocket["labels"], *coffee["labels"]]]
    assert [row[0] for row in rows] == expected_names
    both = {k: np.concatenate([rocket[k], coffee[k]]) for k in ("scores", "boxes")}
    assert np.abs(np.array([row[1] for row in rows]) - both["scores"]).max() <= SCORE_TOL
    assert np.abs(np.array([row[2:] for row in rows]) - both["boxes"]).max() <= BOX_TOL


def test_cpu_numpy(model) -> None:
    ns = run_snippet("cpu_numpy", model=model)
    assert isinstance(ns["xyxy"], np.ndarray) and ns["xyxy"].dtype == np.float32 and ns["cls"].dtype.kind == "i"
    assert isinstance(ns["result"].boxes.xyxy, torch.Tensor)  # tensors until the user asks for numpy
    assert_boxes_match(ns["xyxy"], ns["conf"], ns["cls"], original("rocket.jpg"))


def test_class_names(model) -> None:
    ns = run_snippet("class_names", model=model)
    labels = original("coffee.png")["labels"].tolist()
    assert ns["ids"] == labels and ns["names"] == [COCO80_NAMES[c] for c in labels]


def test_box_formats(model) -> None:
    ns = run_snippet("box_formats", model=model)
    ref = original("astronaut.png")
    h, w = ref["hw"]
    x1, y1, x2, y2 = ref["boxes"].T
    xywh = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
    assert np.abs(ns["xywh"].numpy() - xywh).max() <= BOX_TOL
    assert np.abs(ns["xywhn"].numpy() - xywh / [w, h, w, h]).max() <= BOX_TOL / w
    assert np.abs(ns["xyxyn"].numpy() - ref["boxes"] / [w, h, w, h]).max() <= BOX_TOL / w
    assert_boxes_match(ns["xyxy"], ns["confs"], ref["labels"], ref)


def test_generic_attributes(model, tmp_path: Path) -> None:
    ns = run_snippet("generic_attributes", model=model)
    assert ns["masks"] is ns["keypoints"] is ns["probs"] is ns["obb"] is None
    assert len(ns["boxes"]) == len(original("rocket.jpg")["labels"])
    assert ns["saved"] == "result.jpg" and cv2.imread(str(tmp_path / "result.jpg")).shape == (427, 640, 3)


def test_plot_and_imwrite(model, tmp_path: Path) -> None:
    ns = run_snippet("plot_and_imwrite", model=model)
    photo = cv2.imread(str(default_source() / "coffee.png"))
    written = cv2.imread(str(tmp_path / "annotated.jpg"))
    assert ns["annotated"].shape == photo.shape == written.shape and ns["annotated"].dtype == np.uint8
    x1, y1, _, y2 = np.round(original("coffee.png")["boxes"][0]).astype(int)
    assert (ns["annotated"][y1 + 1 : y2 - 1, x1] != photo[y1 + 1 : y2 - 1, x1]).any()  # a box edge is drawn


def test_plot_to_pil(model, tmp_path: Path) -> None:
    ns = run_snippet("plot_to_pil", model=model)
    assert ns["im_rgb"].size == (512, 512) and ns["im_rgb"].mode == "RGB"  # astronaut.png, the last one
    assert np.array_equal(np.asarray(ns["im_rgb"]), ns["im_bgr"][..., ::-1])
    assert cv2.imread(str(tmp_path / "results0.jpg")).shape == (427, 640, 3)
    assert cv2.imread(str(tmp_path / "results1.jpg")).shape == (512, 512, 3)


def test_opencv_video_loop(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """(The tiny fixture model: nothing here is compared with the original, and it is 10x faster per frame.)"""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (160, 96))
    for i in range(3):
        frame = np.full((96, 160, 3), 40, np.uint8)
        cv2.circle(frame, (30 + 20 * i, 48), 20, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    ns = run_snippet("opencv_video_loop", model=NAS(tiny_checkpoint), video_path=str(video))
    assert len(ns["frames"]) == 3 and all(f.shape == (96, 160, 3) for f in ns["frames"])
    assert not np.array_equal(ns["frames"][0], ns["frames"][1])  # each frame is its own picture


def test_dataframe_json_csv(model) -> None:
    pytest.importorskip("pandas")  # in the test extra
    ns = run_snippet("dataframe_json_csv", model=model)
    ref = original("rocket.jpg")
    df = ns["df"]
    assert df["name"].tolist() == [COCO80_NAMES[c] for c in ref["labels"]]
    assert df["class"].tolist() == ref["labels"].tolist()
    assert np.abs(df["confidence"].to_numpy() - ref["scores"]).max() <= SCORE_TOL
    boxes = [[b["x1"], b["y1"], b["x2"], b["y2"]] for b in df["box"]]
    assert np.abs(np.array(boxes) - ref["boxes"]).max() <= BOX_TOL
    assert [entry["name"] for entry in json.loads(ns["as_json"])] == df["name"].tolist()
    lines = ns["as_csv"].splitlines()
    assert lines[0] == "name,class,confidence,x1,y1,x2,y2" and len(lines) == len(ref["labels"]) + 1


def test_save_and_save_dir(model, tmp_path: Path) -> None:
    ns = run_snippet("save_and_save_dir", model=model)
    run_dir = tmp_path / ns["run_dir"]
    assert Path(ns["run_dir"]) == Path("runs/detect/predict")
    assert cv2.imread(str(run_dir / "coffee.jpg")).shape == (400, 600, 3)
    rows = np.loadtxt(run_dir / "labels" / "coffee.txt", ndmin=2)
    assert rows[:, 0].astype(int).tolist() == original("coffee.png", conf=0.3)["labels"].tolist()


def test_mask_and_count(model) -> None:
    ns = run_snippet("mask_and_count", model=model)
    ref = original("coffee.png")
    assert ns["confident"].cls.int().tolist() == ref["labels"][ref["scores"] > 0.3].tolist()
    expected: dict[str, int] = {}
    for c in ref["labels"]:
        expected[COCO80_NAMES[c]] = expected.get(COCO80_NAMES[c], 0) + 1
    assert dict(ns["counts"]) == expected


def test_labels_and_crops(model, tmp_path: Path) -> None:
    ns = run_snippet("labels_and_crops", model=model)
    ref = original("astronaut.png")
    rows = np.loadtxt(tmp_path / "astronaut.txt", ndmin=2)
    assert rows[:, 0].astype(int).tolist() == ref["labels"].tolist()
    assert np.abs(rows[:, 5] - ref["scores"]).max() <= SCORE_TOL + 1e-6  # %g keeps 6 digits
    folders = sorted({p.parent.name for p in ns["crops"]})
    assert folders == sorted({COCO80_NAMES[c] for c in ref["labels"]})
    assert all(p.is_file() and p.stem.startswith("astronaut") for p in ns["crops"])


# ---------------------------------------------------------------------------------------- val


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The bundled photos labelled with the original pipeline's own detections (conf 0.25): a model that
    reproduces the original finds every labelled box first, so COCO mAP50-95 is 1 for every labelled class."""
    root = tmp_path_factory.mktemp("photos")
    for folder in ("images", "labels"):
        (root / folder).mkdir()
    for photo in ("astronaut.png", "coffee.png", "rocket.jpg"):
        shutil.copy(default_source() / photo, root / "images" / photo)  # the same bytes: the same detections
        ref = original(photo)
        h, w = ref["hw"]
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.8f} {(y1 + y2) / 2 / h:.8f} {(x2 - x1) / w:.8f} {(y2 - y1) / h:.8f}"
            for c, (x1, y1, x2, y2) in zip(ref["labels"], ref["boxes"])
        ]
        (root / "labels" / f"{Path(photo).stem}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(COCO80_NAMES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images\nval: images\nnames:\n{names}\n")
    return str(root / "data.yaml")


def labelled_classes() -> list[int]:
    return sorted(
        {int(c) for photo in ("astronaut.png", "coffee.png", "rocket.jpg") for c in original(photo)["labels"]}
    )


def test_val_metrics(model, data_yaml: str, tmp_path: Path) -> None:
    ns = run_snippet("val_metrics", model=model, data_yaml=data_yaml)
    assert ns["overall"] == pytest.approx((1.0, 1.0, 1.0), abs=1e-9)
    assert ns["per_class"].shape == (80,) and ns["per_class"][labelled_classes()] == pytest.approx(1.0, abs=1e-9)
    assert set(ns["keys"]) == {
        "metrics/precision(B)",
        "metrics/recall(B)",
        "metrics/mAP50(B)",
        "metrics/mAP50-95(B)",
        "fitness",
    }
    assert ns["keys"]["metrics/mAP50-95(B)"] == pytest.approx(1.0, abs=1e-9)
    assert (tmp_path / "runs/detect/val/metrics.json").is_file() and ns["metrics"].save_dir == Path("runs/detect/val")


def test_val_metrics_details(model, data_yaml: str) -> None:
    pytest.importorskip("pandas")  # in the test extra
    ns = run_snippet("val_metrics_details", model=model, data_yaml=data_yaml)
    classes = labelled_classes()
    assert ns["map50"] == ns["map5095"] == pytest.approx(1.0, abs=1e-9)
    assert ns["r"] == pytest.approx(1.0, abs=1e-9)  # every labelled box is found at the best-F1 confidence
    assert ns["table"]["Class"].tolist() == [COCO80_NAMES[c] for c in classes]
    assert ns["all_ap"].shape == (len(classes), 10) and ns["all_ap"] == pytest.approx(1.0, abs=1e-9)
    assert ns["f1"].shape == (len(classes),) and ns["curve_names"][0] == "Precision-Recall(B)"
    assert ns["matrix"].shape == (81, 81)


# ---------------------------------------------------------------------------------------- the README


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_the_readme_shows_the_snippet(name: str) -> None:
    assert textwrap.dedent(SNIPPETS[name]).strip() in README.read_text(encoding="utf-8"), name
