"""The bad-input matrix: each case runs the installed `yolo-nas` in a subprocess and checks the exit code,
a one-line error naming the problem, no traceback, and that nothing half-written is left behind.

Cases for val, export and benchmark live beside their modes' tests; this table covers the grammar,
predict, info and the weights."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch

from formula import formula_torch_state_dict

SCRIPT = Path(sys.executable).parent / "yolo-nas"


def image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


def rgb(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def setup_files(tmp: Path) -> None:
    """Every input the table refers to, written once."""
    image(tmp / "ok.jpg", rgb(60, 80))
    (tmp / "empty_dir").mkdir()
    (tmp / "no_images").mkdir()
    (tmp / "no_images" / "notes.md").write_text("hello")
    (tmp / "empty.jpg").write_bytes(b"")
    png = cv2.imencode(".png", rgb(60, 80))[1].tobytes()
    (tmp / "truncated.png").write_bytes(png[: len(png) // 3])
    (tmp / "text.jpg").write_text("this is not an image")
    image(tmp / "one_pixel.png", rgb(1, 1))
    huge = np.full((20000, 20000, 3), 90, np.uint8)
    huge[5000:15000, 5000:15000] = 200
    image(tmp / "huge.png", huge)  # 1.2 GB decoded, 1.3 MB as a file
    del huge
    image(tmp / "gray.png", rgb(50, 70)[:, :, 0])
    image(tmp / "deep.png", (rgb(50, 70).astype(np.uint16) * 257))
    image(tmp / "alpha.png", np.dstack([rgb(50, 70), np.full((50, 70), 128, np.uint8)]))
    writer = cv2.VideoWriter(str(tmp / "no_frames.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    (tmp / "a_file").write_text("x")
    (tmp / "list.txt").write_text("ok.jpg\nmissing.jpg\n")
    state = formula_torch_state_dict("tiny")
    torch.save({"net": state}, tmp / "tiny.pth")
    torch.save({"net": state}, tmp / "export_me.pth")
    good = (tmp / "tiny.pth").read_bytes()
    (tmp / "truncated.pth").write_bytes(good[: len(good) // 2])
    (tmp / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    bad = dict(state)
    bad["heads.head1.cls_pred.weight"] = bad["heads.head1.cls_pred.weight"][:3].clone()
    torch.save({"net": bad}, tmp / "wrong_shape.pth")
    fewer = dict(state)
    for key in [k for k in fewer if "cls_pred" in k]:
        fewer[key] = fewer[key][:5].clone()
    torch.save({"net": fewer}, tmp / "five_classes.pth")
    # A cache entry whose bytes no longer match the pinned sha256.
    lock = {
        "version": 1,
        "aliases": {},
        "weights": {
            "pinned.pth": {
                "urls": ["http://127.0.0.1:9/pinned.pth"],
                "sha256": hashlib.sha256(good).hexdigest(),
                "size": len(good),
                "variant": "s",
                "input_size": [640, 640],
                "num_classes": 80,
                "class_names": "coco80",
                "format": "sg-checkpoint",
                "licence": {"name": "test", "url": "https://example.invalid"},
            }
        },
    }
    (tmp / "lock.json").write_text(json.dumps(lock))
    (tmp / "cache").mkdir()
    (tmp / "cache" / "pinned.pth").write_bytes(good[:-10] + b"0123456789")
    write_datasets(tmp)


def write_datasets(tmp: Path) -> None:
    """Dataset YAMLs for val: empty, malformed, two-class, and label files with bad classes or coordinates."""
    (tmp / "empty.yaml").write_text("")
    (tmp / "malformed.yaml").write_text("path: [unclosed\nval: {")
    for name, label in (("bad_class", "99 0.5 0.5 0.2 0.2"), ("bad_coords", "0 1.5 0.5 0.2 0.2"), ("background", None)):
        image(tmp / name / "images" / "val" / "a.jpg", rgb(64, 80))
        (tmp / name / "labels" / "val").mkdir(parents=True, exist_ok=True)
        if label is not None:
            (tmp / name / "labels" / "val" / "a.txt").write_text(label + "\n")
        names = "\n".join(f"  {i}: c{i}" for i in range(80))
        (tmp / f"{name}.yaml").write_text(f"path: {tmp / name}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    (tmp / "two_classes.yaml").write_text(
        f"path: {tmp / 'background'}\ntrain: images/val\nval: images/val\nnames: [a, b]\n"
    )


@dataclass(frozen=True)
class Case:
    name: str
    tokens: str  # {tiny} and {tmp} are replaced
    code: int
    message: str = ""  # a fragment the one-line error must contain
    check: Callable[[Path], None] | None = field(default=None, compare=False)


def saved(stem: str, shape: tuple[int, int]) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        out = cv2.imread(str(tmp / "runs/detect/predict" / f"{stem}.jpg"))
        assert out is not None and out.shape[:2] == shape

    return check


def predicted_size(hw: tuple[int, int]) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        entries = json.loads((tmp / "runs/detect/predict/predictions.json").read_text())
        assert [(e["height"], e["width"]) for e in entries] == [hw]

    return check


PREDICT = "predict model={tiny} imgsz=64"
VAL = "val model={tiny} imgsz=64 plots=False"
EXPORT = "export model={tmp}/export_me.pth imgsz=64"
CASES = [
    # grammar and ranges
    Case("unknown key", f"{PREDICT} confx=0.5", 2, "'confx' is not a valid argument for predict. Did you mean 'conf'?"),
    Case("unknown mode", "predcit", 2, "predict"),
    Case("bad type", f"{PREDICT} conf=abc", 2, "conf"),
    Case("conf out of range", f"{PREDICT} conf=1.5", 2, "conf=1.5"),
    Case("iou out of range", f"{PREDICT} iou=-0.1", 2, "iou"),
    Case("imgsz zero", "predict model={tiny} imgsz=0", 2, "imgsz"),
    Case("imgsz text", "predict model={tiny} imgsz=big", 2, "imgsz"),
    Case("negative max_det", f"{PREDICT} max_det=-1", 2, "max_det"),
    Case("batch zero", f"{PREDICT} batch=0", 2, "batch"),
    Case("float batch", f"{PREDICT} batch=2.5", 2, "batch"),
    Case("negative class", f"{PREDICT} classes=-1", 2, "classes"),
    Case("vid_stride zero", f"{PREDICT} vid_stride=0", 2, "vid_stride"),
    Case("missing value", f"{PREDICT} conf=", 2, "conf"),
    Case("bare non-bool key", f"{PREDICT} imgsz", 2, "imgsz"),
    Case("bad device", f"{PREDICT} device=tpu", 2, "device"),
    Case("cuda without gpu", f"{PREDICT} device=cuda source={{tmp}}/ok.jpg", 2, "no CUDA GPU"),
    # sources
    Case("missing file", f"{PREDICT} source={{tmp}}/nope.jpg", 2, "nope.jpg"),
    Case("empty directory", f"{PREDICT} source={{tmp}}/empty_dir", 2, "empty_dir"),
    Case("directory without images", f"{PREDICT} source={{tmp}}/no_images", 2, "no_images"),
    Case("glob without matches", f"{PREDICT} source={{tmp}}/*.tiff", 2, "tiff"),
    Case("list with a missing entry", f"{PREDICT} source={{tmp}}/list.txt", 2, "missing.jpg"),
    Case("unsupported suffix", f"{PREDICT} source={{tmp}}/lock.json", 2, "lock.json"),
    Case("empty jpg", f"{PREDICT} source={{tmp}}/empty.jpg", 1, "empty.jpg"),
    Case("truncated png", f"{PREDICT} source={{tmp}}/truncated.png", 1, "truncated.png"),
    Case("text named jpg", f"{PREDICT} source={{tmp}}/text.jpg", 1, "text.jpg"),
    Case("video without frames", f"{PREDICT} source={{tmp}}/no_frames.avi", 1, "no_frames.avi"),
    Case("unreachable url", f"{PREDICT} source=http://127.0.0.1:9/x.jpg", 1, "http://127.0.0.1:9/x.jpg"),
    Case("1x1 image", f"{PREDICT} source={{tmp}}/one_pixel.png", 0, check=saved("one_pixel", (1, 1))),
    Case(
        "20000x20000 image",
        f"{PREDICT} source={{tmp}}/huge.png save=False save_json",
        0,
        check=predicted_size((20000, 20000)),
    ),
    Case("grayscale png", f"{PREDICT} source={{tmp}}/gray.png", 0, check=saved("gray", (50, 70))),
    Case("16-bit png", f"{PREDICT} source={{tmp}}/deep.png", 0, check=saved("deep", (50, 70))),
    Case("rgba png", f"{PREDICT} source={{tmp}}/alpha.png", 0, check=saved("alpha", (50, 70))),
    # outputs
    Case("output under a file", f"{PREDICT} source={{tmp}}/ok.jpg project={{tmp}}/a_file/out", 1, "a_file"),
    # weights
    Case("unknown weights name", "info model=yolo_nas_x.pt", 2, "Did you mean 'yolo_nas_s.pt'?"),
    Case("truncated weights", "info model={tmp}/truncated.pth", 1, "truncated.pth"),
    Case("random bytes weights", "info model={tmp}/random.pt", 1, "random.pt"),
    Case("weights with wrong shapes", "info model={tmp}/wrong_shape.pth", 1, "tensors with the wrong shape"),
    Case(
        "weights with another class count",
        "predict model={tmp}/five_classes.pth imgsz=64 source={tmp}/ok.jpg",
        0,
        check=saved("ok", (60, 80)),
    ),
    Case("hash-mismatched cache entry", "info model=pinned.pth", 1, "delete"),
    Case("offline download", "info model=yolo_nas_l_coco.pth", 1, "put the file by hand"),
    Case("weights path is a folder", "info model={tmp}/empty_dir", 2, "empty_dir"),
    # val datasets
    Case("empty dataset yaml", f"{VAL} data={{tmp}}/empty.yaml", 2, "empty.yaml"),
    Case("malformed dataset yaml", f"{VAL} data={{tmp}}/malformed.yaml", 2, "malformed.yaml"),
    Case("missing dataset yaml", f"{VAL} data={{tmp}}/nope.yaml", 2, "nope.yaml"),
    Case("dataset with other classes", f"{VAL} data={{tmp}}/two_classes.yaml", 2, "2 classes"),
    Case("label with an out-of-range class", f"{VAL} data={{tmp}}/bad_class.yaml", 1, "bad_class.yaml"),
    Case("label with out-of-range coordinates", f"{VAL} data={{tmp}}/bad_coords.yaml", 1, "bad_coords.yaml"),
    Case("images without labels are background", f"{VAL} data={{tmp}}/background.yaml", 0),
    Case("val bad protocol", f"{VAL} data={{tmp}}/background.yaml protocol=yolo", 2, "protocol"),
    # export
    Case("export unknown format", f"{EXPORT} format=tflite", 2, "format=tflite"),
    Case("export unsupported combination", f"{EXPORT} format=torchscript nms", 2, "nms=True is not supported"),
    Case("export half with int8", f"{EXPORT} format=onnx half int8", 2, "half=True and int8=True"),
    Case("export nms setting without nms", f"{EXPORT} format=onnx conf=0.3", 2, "nms=True"),
    Case("export int8 with a missing dataset", f"{EXPORT} format=onnx int8 data={{tmp}}/nope.yaml", 2, "nope.yaml"),
    Case("export bad opset", f"{EXPORT} format=onnx opset=3", 2, "opset=3"),
    Case("export tensorrt without tensorrt", f"{EXPORT} format=engine", 1, "pip install"),
    # benchmark
    Case("benchmark zero runs", "benchmark model={tiny} imgsz=64 runs=0", 2, "runs"),
    Case("benchmark negative warmup", "benchmark model={tiny} imgsz=64 warmup=-1", 2, "warmup"),
    Case("benchmark unknown format", "benchmark model={tiny} imgsz=64 formats=[tflite]", 2, "tflite"),
    Case("benchmark missing weights", "benchmark model={tmp}/nope.pt imgsz=64", 2, "nope.pt"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad_inputs")
    setup_files(tmp)
    return tmp


def run(tokens: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "YOLONAS_DEBUG"}
    env.update(env_extra or {})
    return subprocess.run([str(SCRIPT), *tokens], cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


def no_partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name.startswith(".")]


def test_the_matrix_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, workspace: Path, tmp_path: Path) -> None:
    if case.name == "export tensorrt without tensorrt" and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    tokens = case.tokens.format(tiny=workspace / "tiny.pth", tmp=workspace).split()
    env = {"YOLONAS_WEIGHTS_LOCK": str(workspace / "lock.json"), "YOLONAS_WEIGHTS_DIR": str(workspace / "cache")}
    if "yolo_nas" in case.tokens:
        env = {"YOLONAS_WEIGHTS_DIR": str(tmp_path / "cache")}
    done = run(tokens, cwd=tmp_path, env_extra=env)
    assert done.returncode == case.code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    if case.code:
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, done.stderr
        assert case.message in errors[0], errors[0]
    if case.check is not None:
        case.check(tmp_path)
    assert no_partial_files(tmp_path) == []


def test_ctrl_c_leaves_complete_files_and_says_how_far_it_got(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(400):
        image(folder / f"im{i:03d}.jpg", rgb(120, 160))
    proc = subprocess.Popen(
        [
            str(SCRIPT),
            "predict",
            f"model={workspace / 'tiny.pth'}",
            f"source={folder}",
            "imgsz=64",
            "save_txt",
            "save_json",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("image 20/"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "interrupted after" in rest and "Traceback" not in rest
    run_dir = tmp_path / "runs/detect/predict"
    jpgs = sorted(run_dir.glob("*.jpg"))
    assert 19 <= len(jpgs) < 400  # the image being saved at the signal may be dropped, never half-written
    assert all(cv2.imread(str(p)) is not None for p in jpgs)
    entries = json.loads((run_dir / "predictions.json").read_text())
    assert len(jpgs) - 1 <= len(entries) <= len(jpgs)
    done = int(rest.split("interrupted after ")[1].split()[0])
    assert done == len(entries)
    assert no_partial_files(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounting a tmpfs needs root on Linux")
def test_full_disk_is_one_clear_error_and_no_partial_file(workspace: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)]).returncode:
        pytest.skip("tmpfs mount not permitted here")
    try:
        done = run(["predict", f"model={workspace / 'tiny.pth'}", "imgsz=64", f"project={disk}"], cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
        assert no_partial_files(disk) == []
        assert all(cv2.imread(str(p)) is not None for p in disk.rglob("*.jpg"))
    finally:
        subprocess.run(["umount", str(disk)])
        time.sleep(0.1)
