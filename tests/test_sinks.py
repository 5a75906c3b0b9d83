"""Run folders, atomic writes, the video sink and predictions.json (all checked by reopening the files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.files import atomic_imwrite, atomic_write_bytes
from yolonas_cli.data import sinks
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sinks import JsonSink, VideoSink, make_run_dir


def test_run_dir_default_and_increment(tmp_path, monkeypatch) -> None:
    """Ultralytics 8's layout (docs/en/modes/predict.md, cfg.get_save_dir): runs/detect/<mode>, then <mode>2, ..."""
    monkeypatch.chdir(tmp_path)
    first = make_run_dir(None, None, exist_ok=False, mode="predict")
    assert first == Path("runs", "detect", "predict") and not first.exists()  # created only on save
    first.mkdir(parents=True)
    assert make_run_dir(None, None, False, "predict") == Path("runs", "detect", "predict2")
    claimed = make_run_dir(None, None, False, "predict", create=True)
    assert claimed.name == "predict2" and claimed.is_dir()
    assert make_run_dir(None, None, False, "predict").name == "predict3"
    assert make_run_dir(None, None, True, "predict").name == "predict"
    for mode in ("val", "train"):  # every mode names its folder through the same rule
        assert make_run_dir(None, None, False, mode, create=True) == Path("runs", "detect", mode)
        assert make_run_dir(None, None, False, mode) == Path("runs", "detect", f"{mode}2")


def test_run_dir_project_and_name(tmp_path) -> None:
    assert make_run_dir(tmp_path / "proj", "demo", False, "predict") == tmp_path / "proj" / "demo"
    (tmp_path / "proj" / "demo").mkdir(parents=True)
    assert make_run_dir(str(tmp_path / "proj"), "demo", False, "val").name == "demo2"
    assert make_run_dir(tmp_path / "proj", None, False, "val") == tmp_path / "proj" / "val"


def test_atomic_write_leaves_no_temp(tmp_path) -> None:
    target = tmp_path / "sub" / "a.txt"
    assert atomic_write_bytes(target, b"hello") == target
    assert target.read_bytes() == b"hello"
    atomic_write_bytes(target, b"again")
    assert os.listdir(target.parent) == ["a.txt"] and target.read_bytes() == b"again"


def test_interrupted_write_leaves_no_partial_target(tmp_path, monkeypatch) -> None:
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(sinks.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "new.bin", b"x" * 1000)
    assert os.listdir(tmp_path) == []
    (tmp_path / "old.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        atomic_imwrite(tmp_path / "old.bin", np.zeros((4, 4, 3), np.uint8), ".png")
    assert os.listdir(tmp_path) == ["old.bin"] and (tmp_path / "old.bin").read_bytes() == b"old"


def test_atomic_imwrite_roundtrip(tmp_path) -> None:
    img = np.random.default_rng(1).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    path = atomic_imwrite(tmp_path / "a.png", img)
    np.testing.assert_array_equal(cv2.imread(str(path)), img)
    with pytest.raises(YoloNasError, match="cannot encode"):
        atomic_imwrite(tmp_path / "b.nope", img)
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def _count_frames(path) -> tuple[int, tuple[int, int], float]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    fps = cap.get(cv2.CAP_PROP_FPS)
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, size, fps


def test_video_sink_writes_frames(tmp_path) -> None:
    sink = VideoSink(tmp_path / "run", "clip", fps=30.0, vid_stride=3)
    for i in range(7):
        sink.write(np.full((24, 32, 3), i * 30, np.uint8))
    sink.write(np.full((48, 64), 10, np.uint8))  # other size, grey: converted and resized
    assert not sink.path.exists(), "the final name appears only on close"
    assert sink.close() == tmp_path / "run" / "clip.avi"
    n, size, fps = _count_frames(sink.path)
    assert (n, size, fps) == (8, (24, 32), 10.0)
    assert os.listdir(tmp_path / "run") == ["clip.avi"]


def test_video_sink_abort_and_errors(tmp_path) -> None:
    with pytest.raises(RuntimeError), VideoSink(tmp_path, "bad", fps=None) as sink:
        sink.write(np.zeros((8, 8, 3), np.uint8))
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), VideoSink(tmp_path, "cam", fps=None) as sink:
        sink.write(np.zeros((8, 8, 3), np.uint8))
        raise KeyboardInterrupt  # a stopped webcam recording is kept
    assert os.listdir(tmp_path) == ["cam.avi"] and _count_frames(tmp_path / "cam.avi")[0] == 1
    assert VideoSink(tmp_path, "empty", fps=25).close() is None
    assert not (tmp_path / "empty.avi").exists()


def test_json_sink(tmp_path) -> None:
    boxes = Boxes(np.array([[1.25, 2, 3, 4.5, 0.876543, 41]], np.float32), (10, 20))
    with JsonSink(tmp_path) as sink:
        sink.add(Result(boxes, {41: "cup"}, None, (10, 20), "/a/b.jpg"))
        sink.add(Result(Boxes(np.zeros((0, 6)), (5, 6)), {}, None, (5, 6), "/a/c.jpg"))
    data = json.loads((tmp_path / "predictions.json").read_text())
    assert data == [
        {
            "path": "/a/b.jpg",
            "height": 10,
            "width": 20,
            "detections": [{"box": [1.25, 2.0, 3.0, 4.5], "confidence": 0.87654, "class": 41, "name": "cup"}],
        },
        {"path": "/a/c.jpg", "height": 5, "width": 6, "detections": []},
    ]
    assert os.listdir(tmp_path) == ["predictions.json"]
