"""`yolo-nas predict` and `NAS.predict`: parity with the original pipeline, every source kind, every output
kind, console lines, and bounded memory."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from formula import FIXTURES
from httpserver import serve
from yolonas_cli import NAS
from yolonas_cli.cli.app import app
from yolonas_cli.core.version import __version__
from yolonas_cli.data.sources import default_source, open_source

SCRIPT = Path(sys.executable).parent / "yolo-nas"
SETTINGS = [(0.25, 0.7), (0.4, 0.5)]
runner = CliRunner()


def reference(name: str, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The original's predict output for one photo, boxes clipped to the image (ours are clipped)."""
    entry = json.loads((FIXTURES / "yolo_nas_s_predict.json").read_text())[f"{name}|conf={conf}|iou={iou}"]
    height, width = entry["image_hw"]
    boxes = np.array(entry["bboxes_xyxy"], dtype=np.float64).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes, np.array(entry["confidence"]), entry["labels"]


def assert_matches_reference(name: str, conf: float, iou: float, boxes, scores, labels) -> None:
    ref_boxes, ref_scores, ref_labels = reference(name, conf, iou)
    assert len(labels) == len(ref_labels), name
    assert [int(c) for c in labels] == ref_labels, name
    if ref_labels:
        assert np.abs(np.asarray(boxes) - ref_boxes).max() <= 0.05, name
        assert np.abs(np.asarray(scores) - ref_scores).max() <= 1e-4, name


def run(*tokens: str, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, list(tokens))
    finally:
        os.chdir(old)


# ------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("backend", ["auto", "torch"])  # auto: OpenVINO or ONNX Runtime where installed
@pytest.mark.parametrize(("conf", "iou"), SETTINGS)
def test_python_api_matches_the_original_pipeline(s_checkpoint, conf, iou, backend):
    results = NAS(s_checkpoint)(conf=conf, iou=iou, backend=backend, verbose=False)
    assert len(results) == 4
    for result in results:
        assert_matches_reference(
            Path(result.path).name, conf, iou, result.boxes.xyxy, result.boxes.conf, result.boxes.cls
        )


@pytest.mark.parametrize(("conf", "iou"), SETTINGS)
def test_cli_save_json_matches_the_original_pipeline(s_checkpoint, tmp_path, conf, iou):
    result = run(
        "predict",
        f"model={s_checkpoint}",
        f"conf={conf}",
        f"iou={iou}",
        "save_json",
        "save=False",
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "runs/detect/predict/predictions.json").read_text())
    assert sorted(Path(e["path"]).name for e in entries) == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
    ]
    for entry in entries:
        dets = entry["detections"]
        assert_matches_reference(
            Path(entry["path"]).name,
            conf,
            iou,
            [d["box"] for d in dets],
            [d["confidence"] for d in dets],
            [d["class"] for d in dets],
        )


def test_the_first_batch_is_preceded_by_an_untimed_warm_up(tiny_checkpoint):
    """The engine runs its backend once on zeros of the first batch's input shape before timing anything
    (a runtime's one-time set-up is not reported as inference time), and only once."""
    from yolonas_cli.engine.engine import EngineSettings

    engine = NAS(tiny_checkpoint).make_engine(EngineSettings(imgsz=(128, 128), batch=2), "cpu", runtime="torch")
    calls: list[tuple[tuple[int, ...], bool]] = []
    real = engine.backend

    class Recorded:  # the real backend, with its inputs written down
        name, device, fixed_input, graph_nms = real.name, real.device, real.fixed_input, real.graph_nms

        def __call__(self, images):
            calls.append((images.shape, not images.any()))
            return real(images)

        def synchronize(self) -> None:
            real.synchronize()

    engine.backend = Recorded()
    frames = list(open_source(default_source()))[:3]
    results = list(engine.stream(frames))
    assert calls == [((2, 3, 128, 128), True), ((2, 3, 128, 128), False), ((1, 3, 128, 128), False)]
    assert engine.timer.images == 3 and len(results) == 3
    engine.run_batch([frames[0].image_bgr])
    assert len(calls) == 4  # warm once


# ------------------------------------------------------------------------------------ sources


def write_images(folder: Path, count: int, size=(96, 128), suffix=".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        cv2.rectangle(image, (10 + i, 10), (60 + i, 70), (255, 255, 255), -1)
        path = folder / f"img{i:03d}{suffix}"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def write_video(path: Path, frames: int, size=(96, 128)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (size[1], size[0]))
    for i in range(frames):
        image = np.full((*size, 3), 40, np.uint8)
        cv2.circle(image, (20 + 3 * i, 48), 15, (0, 200, 255), -1)
        writer.write(image)
    writer.release()
    return path


def predict_cli(checkpoint: Path, cwd: Path, *extra: str):
    result = run("predict", f"model={checkpoint}", "imgsz=128", "conf=0.01", *extra, cwd=cwd)
    assert result.exit_code == 0, result.output
    return result


def test_directory_source_saves_annotated_images_labels_crops_and_json(tiny_checkpoint, tmp_path):
    images = write_images(tmp_path / "imgs", 3)
    out = predict_cli(
        tiny_checkpoint,
        tmp_path,
        f"source={tmp_path / 'imgs'}",
        "save_txt",
        "save_conf",
        "save_crop",
        "save_json",
    )
    run_dir = tmp_path / "runs/detect/predict"
    entries = {Path(e["path"]).name: e for e in json.loads((run_dir / "predictions.json").read_text())}
    assert set(entries) == {p.name for p in images}
    for image in images:
        annotated = cv2.imread(str(run_dir / f"{image.stem}.jpg"))
        assert annotated.shape == cv2.imread(str(image)).shape
        dets = entries[image.name]["detections"]
        label_file = run_dir / "labels" / f"{image.stem}.txt"
        if not dets:
            assert not label_file.exists()
            continue
        rows = np.loadtxt(label_file, ndmin=2)
        assert rows.shape == (len(dets), 6)
        h, w = entries[image.name]["height"], entries[image.name]["width"]
        boxes = np.array([d["box"] for d in dets])
        xywhn = np.stack(
            [
                (boxes[:, 0] + boxes[:, 2]) / 2 / w,
                (boxes[:, 1] + boxes[:, 3]) / 2 / h,
                (boxes[:, 2] - boxes[:, 0]) / w,
                (boxes[:, 3] - boxes[:, 1]) / h,
            ],
            1,
        )
        assert np.array_equal(rows[:, 0], [d["class"] for d in dets])
        assert np.allclose(rows[:, 1:5], xywhn, atol=2e-5)
        assert np.allclose(rows[:, 5], [d["confidence"] for d in dets], atol=1e-5)
    crops = list((run_dir / "crops").rglob("*.jpg"))
    assert len(crops) == sum(len(e["detections"]) for e in entries.values())
    assert f"image 1/3 {images[0]}: 128x128 " in out.stderr
    assert "Results saved to" in out.stderr and "Speed:" in out.stderr


def test_video_source_keeps_frame_count_and_vid_stride(tiny_checkpoint, tmp_path):
    video = write_video(tmp_path / "clip.avi", 10)
    out = predict_cli(tiny_checkpoint, tmp_path, f"source={video}", "save_txt")
    saved = cv2.VideoCapture(str(tmp_path / "runs/detect/predict/clip.avi"))
    assert int(saved.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert int(saved.get(cv2.CAP_PROP_FRAME_WIDTH)) == 128 and int(saved.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 96
    saved.release()
    assert "video 1/1 (frame 10/10)" in out.stderr
    predict_cli(tiny_checkpoint, tmp_path, f"source={video}", "vid_stride=3", "name=strided")
    strided = cv2.VideoCapture(str(tmp_path / "runs/detect/strided/clip.avi"))
    assert int(strided.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    strided.release()


def test_glob_and_list_file_sources(tiny_checkpoint, tmp_path):
    images = write_images(tmp_path / "imgs", 4)
    result = predict_cli(
        tiny_checkpoint, tmp_path, f"source={tmp_path / 'imgs'}/img00[12].jpg", "save=False", "save_json"
    )
    names = [Path(e["path"]).name for e in json.loads((tmp_path / "runs/detect/predict/predictions.json").read_text())]
    assert names == ["img001.jpg", "img002.jpg"] and "image 2/2" in result.stderr
    listing = tmp_path / "list.txt"
    listing.write_text(f"imgs/{images[3].name}\n\n# a comment\n{images[0]}\n")
    predict_cli(tiny_checkpoint, tmp_path, f"source={listing}", "save=False", "save_json")
    names = [Path(e["path"]).name for e in json.loads((tmp_path / "runs/detect/predict2/predictions.json").read_text())]
    assert names == ["img003.jpg", "img000.jpg"]


def test_http_image_source(tiny_checkpoint, tmp_path):
    image = write_images(tmp_path / "imgs", 1)[0]
    with serve({"/photo.jpg": image.read_bytes()}) as base:
        result = predict_cli(tiny_checkpoint, tmp_path, f"source={base}/photo.jpg", "save_json")
    entries = json.loads((tmp_path / "runs/detect/predict/predictions.json").read_text())
    assert len(entries) == 1 and (entries[0]["height"], entries[0]["width"]) == (96, 128)
    assert cv2.imread(str(tmp_path / "runs/detect/predict/photo.jpg")).shape == (96, 128, 3)
    assert "photo.jpg" in result.stderr


def test_default_source_is_the_bundled_photos_and_runs_increment(tiny_checkpoint, tmp_path):
    predict_cli(tiny_checkpoint, tmp_path)
    predict_cli(tiny_checkpoint, tmp_path)
    for run_dir in ("predict", "predict2"):
        assert sorted(p.name for p in (tmp_path / "runs/detect" / run_dir).iterdir()) == [
            "astronaut.jpg",
            "chelsea.jpg",
            "coffee.jpg",
            "rocket.jpg",
        ]
    predict_cli(tiny_checkpoint, tmp_path, "project=out", "name=mine", "exist_ok")
    assert (tmp_path / "out/mine/coffee.jpg").is_file()


def test_python_api_numpy_pil_list_stream_and_result_methods(tiny_checkpoint):
    from PIL import Image

    model = NAS(tiny_checkpoint)
    bgr = cv2.imread(str(default_source() / "coffee.png"))
    pil = Image.open(default_source() / "coffee.png")
    results = model.predict([bgr, pil], imgsz=160, conf=0.01, verbose=False)
    assert len(results) == 2 and results[0].orig_shape == (400, 600)
    assert np.allclose(results[0].boxes.xyxy, results[1].boxes.xyxy)
    assert results[0].boxes.xywhn.shape == (len(results[0].boxes), 4)
    assert results[0].plot().shape == bgr.shape
    assert json.loads(results[0].to_json())[0].keys() >= {"name", "class", "confidence", "box"}
    generator = model(bgr, stream=True, imgsz=160, verbose=False)
    assert not isinstance(generator, list) and len(list(generator)) == 1


def test_classes_and_max_det_filter_detections(tiny_checkpoint):
    model = NAS(tiny_checkpoint)
    everything = model(imgsz=160, conf=0.01, verbose=False)
    assert any(len({int(c) for c in r.boxes.cls}) > 1 for r in everything)
    only = model(imgsz=160, conf=0.01, classes=[int(everything[0].boxes.cls[0])], verbose=False)
    assert all(set(r.boxes.cls.int().tolist()) <= {int(everything[0].boxes.cls[0])} for r in only)
    capped = model(imgsz=160, conf=0.01, max_det=2, verbose=False)
    assert all(len(r.boxes) <= 2 for r in capped)


def test_batches_give_the_same_detections_as_batch_one_square_and_rect(tiny_checkpoint, tmp_path):
    """batch=3 (a full and a partial batch) gives what batch=1 gives, on square inputs and on rect ones (which
    are another input, 96x160 instead of 160x160: other detections, compared with rect batch=1)."""
    write_images(tmp_path / "imgs", 5, size=(96, 160))
    model = NAS(tiny_checkpoint)
    for rect, shape in ((False, (160, 160)), (True, (96, 160))):
        single = model(tmp_path / "imgs", imgsz=160, conf=0.01, rect=rect, verbose=False)
        batched = model(tmp_path / "imgs", imgsz=160, conf=0.01, rect=rect, batch=3, verbose=False)
        assert all(r.input_shape == shape for r in single + batched)
        assert [len(r.boxes) for r in single] == [len(r.boxes) for r in batched] and len(single[0].boxes) > 0
        for a, b in zip(single, batched):
            assert torch.equal(a.boxes.cls, b.boxes.cls)
            assert np.allclose(a.boxes.xyxy, b.boxes.xyxy, atol=1e-3)
            assert np.allclose(a.boxes.conf, b.boxes.conf, atol=1e-5)


def test_subprocess_of_the_installed_script(tiny_checkpoint, tmp_path):
    write_images(tmp_path / "imgs", 2)
    done = subprocess.run(
        [
            str(SCRIPT),
            "predict",
            f"model={tiny_checkpoint}",
            "source=imgs",
            "imgsz=128",
            "save_txt",
            "conf=0.01",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs/detect/predict/img000.jpg").is_file()
    assert "image 2/2" in done.stderr and "Traceback" not in done.stderr


def test_missing_source_is_a_usage_error(tiny_checkpoint, tmp_path):
    result = run("predict", f"model={tiny_checkpoint}", "source=nothing_here.jpg", cwd=tmp_path)
    assert result.exit_code == 2
    assert "nothing_here.jpg" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_memory_stays_bounded_over_500_images(tiny_checkpoint, tmp_path):
    """Peak RSS over 500 images stays within 60 MB of the peak over 50: nothing accumulates per image."""
    write_images(tmp_path / "many", 500, size=(480, 640))
    script = textwrap.dedent("""
        import resource, sys
        from yolonas_cli.cli.app import run_cli
        code = run_cli(sys.argv[1:])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
    """)

    def peak_kb(source: str, name: str) -> int:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                "predict",
                f"model={tiny_checkpoint}",
                f"source={source}",
                "imgsz=128",
                "save_txt",
                f"name={name}",
                "verbose=False",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        rss, code = done.stdout.split()
        assert code == "0", done.stderr
        return int(rss)

    few = peak_kb(str(tmp_path / "many" / "img0[0-4]?.jpg"), "few")
    many = peak_kb(str(tmp_path / "many"), "many")
    assert len(list((tmp_path / "runs/detect/many").glob("*.jpg"))) == 500
    assert many - few < 60 * 1024, (few, many)


# ------------------------------------------------------------------------------------ Ultralytics-style behaviour


def test_header_line_once_before_the_first_result(tiny_checkpoint, tmp_path):
    """Version, the device device=auto chose, the model and its fused size; only when verbose."""
    out = predict_cli(tiny_checkpoint, tmp_path, "save=False").stderr.splitlines()
    fused = NAS(tiny_checkpoint).fuse().model
    params = sum(p.numel() for p in fused.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():  # torch's own count, independent of ours
        fused(torch.zeros(1, 3, 128, 128))
    header = [line for line in out if line.startswith("yolo-nas ")]
    assert len(header) == 1
    assert header[0].startswith(
        f"yolo-nas {__version__}, Python {platform.python_version()}, torch {torch.__version__}"
    )
    assert ", cpu (" in header[0]  # device=auto on this CPU-only machine
    model_part = header[0].split("; ")[1]
    # backend=auto names the runtime it chose: OpenVINO, then ONNX Runtime, then PyTorch (README's order)
    installed = [name for name in ("openvino", "onnxruntime") if importlib.util.find_spec(name) is not None]
    chosen = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}[installed[0]] if installed else "PyTorch"
    assert model_part.startswith(f"formula_tiny.pth (fused, {chosen}): {params:,} parameters, ")
    assert model_part.endswith(" GFLOPs at 128x128")
    gflops = float(model_part.split()[-4])
    # ours counts the convolution modules, torch's every convolution call: 0.2% apart on this model
    assert gflops == pytest.approx(counter.get_total_flops() / 1e9, rel=0.01)
    assert out.index(header[0]) < next(i for i, line in enumerate(out) if line.startswith("image 1/4"))
    torch_run = predict_cli(tiny_checkpoint, tmp_path, "save=False", "backend=torch").stderr
    assert f"formula_tiny.pth (fused, PyTorch): {params:,} parameters, " in torch_run
    quiet = predict_cli(tiny_checkpoint, tmp_path, "save=False", "verbose=False")
    assert quiet.stderr == "" and quiet.stdout == ""


def test_run_folders_are_ultralytics_and_save_dir_is_on_the_results(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = NAS(tiny_checkpoint)(imgsz=128, save=True, verbose=False)
    second = NAS(tiny_checkpoint)(imgsz=128, save_txt=True, conf=0.01, verbose=False)
    assert {r.save_dir for r in first} == {str(Path("runs/detect/predict"))}
    assert {r.save_dir for r in second} == {str(Path("runs/detect/predict2"))}
    assert (tmp_path / "runs/detect/predict/rocket.jpg").is_file()
    assert NAS(tiny_checkpoint)(imgsz=128, verbose=False)[0].save_dir is None  # nothing saved: no folder
    assert sorted(p.name for p in (tmp_path / "runs/detect").iterdir()) == ["predict", "predict2"]


def test_show_on_a_headless_machine_warns_once_and_the_run_goes_on(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = predict_cli(tiny_checkpoint, tmp_path, "show", "stream=True")
    warnings = [line for line in result.stderr.splitlines() if "show=True" in line]
    assert len(warnings) == 1 and "cannot open a window" in warnings[0] and "saving is not affected" in warnings[0]
    assert len(list((tmp_path / "runs/detect/predict").glob("*.jpg"))) == 4


def test_save_frames_writes_every_video_frame(tiny_checkpoint, tmp_path):
    video = write_video(tmp_path / "clip.avi", 6)
    predict_cli(tiny_checkpoint, tmp_path, f"source={video}", "save=False", "save_frames", "vid_stride=2")
    run_dir = tmp_path / "runs/detect/predict"
    assert sorted(p.name for p in run_dir.iterdir()) == ["clip_frames"]  # save=False: no video
    frames = sorted((run_dir / "clip_frames").iterdir())
    assert [p.name for p in frames] == ["clip_1.jpg", "clip_2.jpg", "clip_3.jpg"]
    assert all(cv2.imread(str(p)).shape == (96, 128, 3) for p in frames)


def test_show_boxes_false_saves_the_plain_image(tiny_checkpoint, tmp_path):
    image = write_images(tmp_path / "imgs", 1, suffix=".png")[0]
    predict_cli(tiny_checkpoint, tmp_path, f"source={image}", "show_boxes=False", "conf=0.0")
    saved = cv2.imread(str(tmp_path / "runs/detect/predict/img000.jpg"))
    plain = cv2.imdecode(cv2.imencode(".jpg", cv2.imread(str(image)))[1], cv2.IMREAD_COLOR)
    assert np.array_equal(saved, plain)


def test_progress_total_counts_video_frames(tmp_path):
    from yolonas_cli.data.sources import open_source

    write_images(tmp_path / "mixed", 2)
    write_video(tmp_path / "mixed" / "clip.avi", 10)
    assert open_source(tmp_path / "mixed").frame_total() == 12
    assert open_source(tmp_path / "mixed", vid_stride=3).frame_total() == 2 + 4
    assert len(list(open_source(tmp_path / "mixed", vid_stride=3))) == 6
    assert open_source([str(tmp_path / "mixed" / "clip.avi"), 0]).frame_total() is None  # a webcam: endless


def test_an_example_source_that_is_missing_names_the_bundled_photos(tiny_checkpoint, tmp_path):
    result = run("predict", f"model={tiny_checkpoint}", "source=bus.jpg", cwd=tmp_path)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "source 'bus.jpg' does not exist" in result.stderr
    assert f"are in {default_source()}: leave source out" in result.stderr and "rocket.jpg" in result.stderr
    ran = predict_cli(tiny_checkpoint, tmp_path, "source=rocket.jpg", "save=False")
    assert f"using the bundled sample photo {default_source() / 'rocket.jpg'}" in ran.stderr
    assert f"image 1/1 {default_source() / 'rocket.jpg'}: " in ran.stderr


def test_a_static_export_given_another_imgsz_warns(tiny_checkpoint, tmp_path):
    import shutil

    weights = Path(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))
    exported = NAS(weights).export(format="torchscript", imgsz=128, verbose=False)
    warned = run("predict", f"model={exported}", "imgsz=160", "save=False", cwd=tmp_path)
    assert warned.exit_code == 0, warned.output
    assert "fixed input of 128x128, so it runs at that size, not at imgsz=160x160" in warned.stderr
    assert ": 128x128 " in warned.stderr  # the images did run at the model's size
    default = run("predict", f"model={exported}", "save=False", cwd=tmp_path)
    assert default.exit_code == 0 and "fixed input" not in default.stderr
