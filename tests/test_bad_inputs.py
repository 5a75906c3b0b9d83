"""The bad-input matrix: each case runs the installed `yolo-nas` in a subprocess and checks the exit code,
a one-line error naming the problem, no traceback, and that nothing half-written is left behind.

Cases for val, export and benchmark live beside their modes' tests; this table covers the grammar,
predict, track and sliced inference, info and the weights."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch

from formula import formula_torch_state_dict
from hostile import yaml_laughs
from httpserver import ServedURL, serve
from test_datasets import zip_bytes, zip_of_zeros
from test_safe_pickle import (
    NEWFALSE,
    PROTO2,
    STOP,
    I,
    deflated_zip,
    ordered_dict,
    rebuild,
    shared_module_dag,
    storage,
    torch_zip,
    tup,
)

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
    write_trackers(tmp)


def write_trackers(tmp: Path) -> None:
    """Tracker YAMLs with an unknown key and with bad values, and a photo for tracking one image."""
    (tmp / "unknown_key.yaml").write_text("tracker_type: bytetrack\ntrack_high_thresh: 0.3\nreid_model: x.pt\n")
    (tmp / "bad_thresh.yaml").write_text("tracker_type: bytetrack\ntrack_high_thresh: 1.5\n")
    (tmp / "bad_gmc.yaml").write_text("tracker_type: botsort\ngmc_method: magic\n")
    photo = cv2.imread(str(Path(__file__).parents[1] / "src/yolonas_cli/assets/astronaut.png"))
    image(tmp / "astronaut.png", cv2.resize(photo, (96, 96), interpolation=cv2.INTER_AREA))


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


def write_hostile_files(tmp: Path, base: ServedURL) -> None:
    """The inputs of the hardening cases (issue 12): files served by the test server at `base`, weights records
    pointing at it, hostile pickles, YAMLs and exported models, named pipes."""
    files, knobs = base.knobs.files, base.knobs
    jpg = cv2.imencode(".jpg", rgb(60, 80))[1].tobytes()
    good = (tmp / "tiny.pth").read_bytes()
    # sources and datasets from URLs
    files["/x/..%2F..%2F..%2Fescaped.jpg"] = jpg
    files["/huge.jpg"] = jpg
    knobs.length["/huge.jpg"] = 10 << 30
    files["/planted.zip"] = zip_bytes({"marker.txt": b"planted"})
    files["/bomb.zip"] = zip_of_zeros(256 << 20, "remote/images/val/zeros.png")
    names = "\n".join(f"  {i}: c{i}" for i in range(80))
    for name, entry in (
        ("escape", f"[{{url: {base}/planted.zip, dir: ../../../outside}}]"),
        ("absolute", f"[{{url: {base}/planted.zip, dir: {tmp / 'planted_here'}}}]"),
        ("bomb", f"{base}/bomb.zip"),
    ):
        (tmp / f"{name}.yaml").write_text(f"path: remote\nval: images/val\nnames:\n{names}\ndownload: {entry}\n")
    # weights served badly (records in the workspace's lock)
    weights = {
        "html.pt": (b"<!DOCTYPE html><html><body>Please sign in</body></html>" * 20, {"Content-Type": "text/html"}),
        "gzip.pt": (gzip.compress(good), {"Content-Encoding": "gzip"}),
        "short.pt": (good, {}),
        "endless.pt": (b"", {}),
        "racy.pt": (good, {}),
        "slow.pt": (good, {}),
    }
    for name, (data, headers) in weights.items():
        files[f"/w/{name}"], knobs.headers[f"/w/{name}"] = data, headers
    knobs.length["/w/short.pt"] = len(good) + 4096
    knobs.endless["/w/endless.pt"] = b"\0" * 65536
    knobs.trickle["/w/racy.pt"] = (256 << 10, 0.05)  # ~1.5 MB in about 0.3 s: long enough to overlap
    knobs.trickle["/w/slow.pt"] = (1, 0.5)  # a byte every half second
    lock = json.loads((tmp / "lock.json").read_text())
    template = lock["weights"]["pinned.pth"]
    for name in [*weights, "bad_cached.pt"]:
        size = 100_000 if name == "endless.pt" else None
        lock["weights"][name] = {**template, "urls": [f"{base}/w/{name}"], "sha256": None, "size": size}
    (tmp / "lock.json").write_text(json.dumps(lock))
    # hostile weights files
    dag = shared_module_dag(60)  # 2**60 module visits when walked as a tree
    torch_zip(tmp / "dag.pt", dag)
    state = formula_torch_state_dict("tiny")
    laughs: list = ["lol"] * 10
    for _ in range(7):  # 10**8 strings in metadata, a few KB on disk
        laughs = [laughs] * 10
    torch.save(
        {"format": "yolonas-cli", "version": 1, "state_dict": state, "meta": {"notes": laughs}}, tmp / "laughs.pt"
    )
    expanded = dict(state)
    for head, width in (("head1", 8), ("head2", 16), ("head3", 32)):
        expanded[f"heads.{head}.cls_pred.weight"] = torch.zeros(1, 1, 1, 1).expand(30_000_000, width, 1, 1)
        expanded[f"heads.{head}.cls_pred.bias"] = torch.zeros(1).expand(30_000_000)
    torch.save({"net": expanded}, tmp / "expanded.pth")  # 3e7 classes from one float: 5 GB once copied
    numel = 64 << 20
    record = rebuild(storage(numel=numel), I(0), tup(I(numel)), tup(I(1)), NEWFALSE, ordered_dict())
    deflated_zip(tmp / "deflated.pt", PROTO2 + record + STOP, {"0": bytes(numel * 4)})
    # YAML alias bombs
    (tmp / "laughs.yaml").write_text(yaml_laughs(9) + "path: .\nval: images\nnames: *l9\n")
    (tmp / "laughs_cfg.yaml").write_text(yaml_laughs(9) + "conf: *l9\n")
    # named pipes in a source folder and in a dataset's image list
    (tmp / "fifo_dir").mkdir()
    image(tmp / "fifo_dir" / "ok.jpg", rgb(60, 80))
    os.mkfifo(tmp / "fifo_dir" / "pipe.jpg")
    image(tmp / "fifo_ds" / "images" / "val" / "a.jpg", rgb(64, 80))
    os.mkfifo(tmp / "fifo_ds" / "images" / "val" / "pipe.jpg")
    (tmp / "fifo_ds" / "val.txt").write_text("images/val/a.jpg\nimages/val/pipe.jpg\n")
    (tmp / "fifo.yaml").write_text(f"path: {tmp / 'fifo_ds'}\nval: val.txt\nnames:\n{names}\n")
    # an image OpenCV cannot encode as JPEG beside one it can
    image(tmp / "wide_dir" / "ok.jpg", rgb(60, 80))
    image(tmp / "wide_dir" / "wide.png", rgb(1, 100000))
    # labels: an infinite class id; COCO JSON without file_name
    for folder in ("inf_class", "bad_coco"):
        for stem, label in (("a", "0 0.5 0.5 0.2 0.2"), ("b", "inf 0.5 0.5 0.2 0.2")):
            image(tmp / folder / "images" / "val" / f"{stem}.jpg", rgb(64, 80))
            (tmp / folder / "labels" / "val").mkdir(parents=True, exist_ok=True)
            (tmp / folder / "labels" / "val" / f"{stem}.txt").write_text(label + "\n")
    (tmp / "inf_class.yaml").write_text(f"path: {tmp / 'inf_class'}\nval: images/val\nnames:\n{names}\n")
    coco = {"images": [{"id": 1}], "annotations": [], "categories": [{"id": i + 1, "name": f"c{i}"} for i in range(80)]}
    (tmp / "bad_coco" / "ann.json").write_text(json.dumps(coco))
    (tmp / "bad_coco.yaml").write_text(
        f"path: {tmp / 'bad_coco'}\nval: images/val\nannotations: {{val: ann.json}}\nnames:\n{names}\n"
    )
    write_exported_impostors(tmp)


def write_exported_impostors(tmp: Path) -> None:
    """Exported files that carry our metadata but are not YOLO-NAS exports, or are damaged: an ONNX graph of
    two Add nodes, one whose weights lie outside its folder, and an OpenVINO IR of it without/with half its .bin."""
    if importlib.util.find_spec("onnx") is None:
        return
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from yolonas_cli.core.coco import COCO80_NAMES
    from yolonas_cli.formats.metadata import ExportMetadata

    meta = ExportMetadata(
        names=dict(enumerate(COCO80_NAMES)),
        imgsz=(64, 64),
        batch=1,
        dynamic=False,
        precision="fp32",
        nms=False,
        model="yolo_nas_s",
        source="yolo_nas_s.pt",
        source_sha256="0" * 64,
        format="onnx",
        version="0.1.0",
    )

    def graph(weight: TensorProto) -> onnx.ModelProto:
        shape = [1, 3, 64, 64]
        inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)]
        outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("boxes", "scores")]
        nodes = [helper.make_node("Add", ["images", "w"], [name]) for name in ("boxes", "scores")]
        model = helper.make_model(
            helper.make_graph(nodes, "impostor", inputs, outputs, [weight]), opset_imports=[helper.make_opsetid("", 17)]
        )
        model.ir_version = 8
        for key, value in meta.to_pairs().items():
            model.metadata_props.add(key=key, value=value)
        return model

    weight = numpy_helper.from_array(np.zeros((1, 3, 64, 64), np.float32), "w")
    onnx.save(graph(weight), str(tmp / "impostor.onnx"))
    (tmp / "secret.bin").write_bytes(b"\0" * 4)
    outside = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "4")):
        outside.external_data.add(key=key, value=value)
    (tmp / "onnx_ext").mkdir()
    (tmp / "onnx_ext" / "outside.onnx").write_bytes(graph(outside).SerializeToString())
    if importlib.util.find_spec("openvino") is None:
        return
    import openvino as ov

    for name in ("nobin", "cutbin"):
        folder = tmp / f"{name}_openvino_model"
        folder.mkdir()
        ov.save_model(ov.convert_model(str(tmp / "impostor.onnx")), str(folder / "model.xml"), compress_to_fp16=False)
    (tmp / "nobin_openvino_model" / "model.bin").unlink()
    cut = tmp / "cutbin_openvino_model" / "model.bin"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])


@dataclass(frozen=True)
class Case:
    name: str
    tokens: str  # {tiny}, {tmp} (the shared workspace) and {base} (the test server's URL) are replaced
    code: int
    message: str = ""  # a fragment the one-line error must contain
    check: Callable[[Path], None] | None = field(default=None, compare=False)
    env: tuple[tuple[str, str], ...] = ()  # extra environment; {cwd} (the case's own folder) and {tmp} replaced
    warning: str = ""  # a fragment stderr must contain (for cases that succeed with a warning)
    timeout: float = 180  # cases that used to hang get less, so that a regression fails instead of waiting
    needs: str = ""  # an optional module the case needs (skipped without it)
    prepare: Callable[[Path], None] | None = field(default=None, compare=False)  # run in the case folder first


def saved(stem: str, shape: tuple[int, int]) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        out = cv2.imread(str(tmp / "runs/detect/predict" / f"{stem}.jpg"))
        assert out is not None and out.shape[:2] == shape

    return check


def tracked_once(stem: str) -> Callable[[Path], None]:
    """Track on one image: every object is a new track of frame 1, ids 1, 2, ..."""

    def check(tmp: Path) -> None:
        rows = np.loadtxt(tmp / "runs/detect/track/labels" / f"{stem}.txt", delimiter=",", ndmin=2)
        assert len(rows) > 0 and (rows[:, 0] == 1).all()
        assert rows[:, 1].tolist() == list(range(1, len(rows) + 1))

    return check


def predicted_size(hw: tuple[int, int]) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        entries = json.loads((tmp / "runs/detect/predict/predictions.json").read_text())
        assert [(e["height"], e["width"]) for e in entries] == [hw]

    return check


OWN_CACHE = (("YOLONAS_WEIGHTS_DIR", "{cwd}/cache"),)


def downloaded_inside(name: str) -> Callable[[Path], None]:
    """The URL source was saved as `name` inside the download folder, and nowhere else."""

    def check(cwd: Path) -> None:
        inside = cwd / "sys" / "tmp" / "yolonas_sources"
        found = list(cwd.rglob(name))
        assert [p for p in found if p.is_relative_to(inside)], found
        assert [p for p in found if not p.is_relative_to(inside)] == [cwd / "runs/detect/predict" / name]  # annotated
        assert len(json.loads((cwd / "runs/detect/predict/predictions.json").read_text())) == 1

    return check


def nothing_planted(cwd: Path) -> None:
    """No file of the refused archive exists anywhere (the case folder, the workspace)."""
    assert list(cwd.rglob("marker.txt")) == [] and list(cwd.rglob("planted.zip")) == []
    assert not (cwd.parent / "outside").exists()
    assert not any(cwd.parent.glob("*/planted_here"))


def nothing_unpacked(cwd: Path) -> None:
    assert list(cwd.rglob("zeros.png")) == [] and list(cwd.rglob("bomb.zip")) == []


def nothing_cached(name: str) -> Callable[[Path], None]:
    """Neither the file, nor a .part, nor a recorded hash for `name` in the case's own cache."""

    def check(cwd: Path) -> None:
        cache = cwd / "cache"
        assert not (cache / name).exists(), list(cache.iterdir())
        record = cache / "weights.lock.json"
        assert not record.exists() or name not in json.loads(record.read_text())["weights"]

    return check


def error_page_in_cache(name: str) -> Callable[[Path], None]:
    """Put an HTTP error page in the case's cache under the name of a weights file."""

    def prepare(cwd: Path) -> None:
        (cwd / "cache").mkdir()
        (cwd / "cache" / name).write_text("<html><body>502 Bad Gateway</body></html>")

    return prepare


def nothing_recorded(name: str) -> Callable[[Path], None]:
    """The bad cached file is left where it is (the message says to delete it) and its hash is not trusted."""

    def check(cwd: Path) -> None:
        assert (cwd / "cache" / name).exists()
        record = cwd / "cache" / "weights.lock.json"
        assert not record.exists() or name not in json.loads(record.read_text())["weights"]

    return check


def wide_run_went_on(cwd: Path) -> None:
    """The other image was saved, predictions.json holds both, and OpenCV's own log did not leak."""
    run_dir = cwd / "runs/detect/predict"
    assert cv2.imread(str(run_dir / "ok.jpg")) is not None and not (run_dir / "wide.jpg").exists()
    entries = json.loads((run_dir / "predictions.json").read_text())
    assert sorted((e["height"], e["width"]) for e in entries) == [(1, 100000), (60, 80)]


PREDICT = "predict model={tiny} imgsz=64"
VAL = "val model={tiny} imgsz=64 plots=False"
TRACK = "track model={tiny} imgsz=96"
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
    # track and sliced inference
    Case(
        "tracker yaml with an unknown key", f"{TRACK} tracker={{tmp}}/unknown_key.yaml", 2, "unknown key 'reid_model'"
    ),
    Case("tracker yaml with a bad threshold", f"{TRACK} tracker={{tmp}}/bad_thresh.yaml", 2, "track_high_thresh=1.5"),
    Case("tracker yaml with a bad gmc_method", f"{TRACK} tracker={{tmp}}/bad_gmc.yaml", 2, "gmc_method='magic'"),
    Case("missing tracker yaml", f"{TRACK} tracker={{tmp}}/nope.yaml", 2, "bytetrack.yaml or botsort.yaml"),
    Case("track on ray", f"{TRACK} ray=local", 2, "'ray' is not a valid argument for track"),
    Case("track one image", f"{TRACK} source={{tmp}}/astronaut.png save_txt", 0, check=tracked_once("astronaut")),
    Case("slice too small", f"{PREDICT} slice=32", 2, "slice=32 is too small"),
    Case("slice not a size", f"{PREDICT} slice=100,abc", 2, "slice='100,abc'"),
    Case("slice_overlap of 1", f"{TRACK} slice_overlap=1", 2, "slice_overlap=1"),
    Case("slice_merge unknown", f"{PREDICT} slice_merge=wbf", 2, "slice_merge=wbf"),
    Case(
        "slice larger than the image", f"{PREDICT} source={{tmp}}/ok.jpg slice=640", 2, "larger than the image (60x80)"
    ),
    Case(
        "val slice larger than the images", f"{VAL} data={{tmp}}/background.yaml slice=100", 2, "larger than the image"
    ),
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
    # hardening, issue 12: writes outside their folders
    Case(
        "url source with an encoded ../ in its name",
        f"{PREDICT} source={{base}}/x/..%2F..%2F..%2Fescaped.jpg save_json",
        0,
        check=downloaded_inside("escaped.jpg"),
    ),
    Case(
        "dataset download unpacking above the datasets folder",
        f"{VAL} data={{tmp}}/escape.yaml",
        1,
        "outside the datasets folder",
        check=nothing_planted,
        env=(("YOLONAS_DATASETS_DIR", "{cwd}/a/b/datasets"),),
    ),
    Case(
        "dataset download unpacking to an absolute folder",
        f"{VAL} data={{tmp}}/absolute.yaml",
        1,
        "outside the datasets folder",
        check=nothing_planted,
        env=(("YOLONAS_DATASETS_DIR", "{cwd}/datasets"),),
    ),
    # small inputs with a huge cost
    Case("weights whose modules form a DAG 60 deep", "info model={tmp}/dag.pt", 1, "shares modules", timeout=60),
    Case("billion laughs in weights metadata", "info model={tmp}/laughs.pt", 1, "metadata holds more than", timeout=60),
    Case("class head expanded to 3e7 classes", "info model={tmp}/expanded.pth", 1, "overlapping strides", timeout=60),
    Case("deflate bomb inside weights", "info model={tmp}/deflated.pt", 1, "decompression bomb", timeout=60),
    Case("yaml alias bomb in a dataset", f"{VAL} data={{tmp}}/laughs.yaml", 2, "more than 100,000 nodes", timeout=60),
    Case("yaml alias bomb in cfg", f"{PREDICT} cfg={{tmp}}/laughs_cfg.yaml", 2, "more than 100,000 nodes", timeout=60),
    Case(
        "zip bomb in a dataset download",
        f"{VAL} data={{tmp}}/bomb.yaml",
        1,
        "over 100 times its size",
        check=nothing_unpacked,
        env=(("YOLONAS_DATASETS_DIR", "{cwd}/datasets"),),
        timeout=60,
    ),
    Case(
        "named pipe in a source folder",
        f"{PREDICT} source={{tmp}}/fifo_dir save_json",
        0,
        warning="is a named pipe",
        check=predicted_size((60, 80)),
        timeout=60,
    ),
    Case("named pipe in a dataset list", f"{VAL} data={{tmp}}/fifo.yaml", 0, warning="is a named pipe", timeout=60),
    # downloads
    Case(
        "weights served as an HTML page",
        "info model=html.pt",
        1,
        "HTML page",
        check=nothing_cached("html.pt"),
        env=OWN_CACHE,
    ),
    Case(
        "weights served gzip-encoded",
        "info model=gzip.pt",
        1,
        "Content-Encoding: gzip",
        check=nothing_cached("gzip.pt"),
        env=OWN_CACHE,
    ),
    Case(
        "weights body shorter than announced",
        "info model=short.pt",
        1,
        "connection closed after",
        check=nothing_cached("short.pt"),
        env=OWN_CACHE,
    ),
    Case(
        "weights body that never ends",
        "info model=endless.pt",
        1,
        "grew past 100000 bytes",
        check=nothing_cached("endless.pt"),
        env=OWN_CACHE,
        timeout=60,
    ),
    Case(
        "url source announcing 10 GB",
        f"{PREDICT} source={{base}}/huge.jpg",
        1,
        "expected at most 4294967296",
        timeout=60,
    ),
    Case(
        "cached weights that are not weights",
        "info model=bad_cached.pt",
        1,
        "bad_cached.pt is not usable: it is an HTML or XML page",
        check=nothing_recorded("bad_cached.pt"),
        env=OWN_CACHE,
        prepare=error_page_in_cache("bad_cached.pt"),
    ),
    # run control and odd input
    Case(
        "an image OpenCV cannot encode among others",
        f"{PREDICT} source={{tmp}}/wide_dir save_json",
        0,
        warning="could not save the annotated image of",
        check=wide_run_went_on,
    ),
    Case("label with an infinite class id", f"{VAL} data={{tmp}}/inf_class.yaml", 0, warning="class inf is not an id"),
    Case("coco json without file_name", f"{VAL} data={{tmp}}/bad_coco.yaml", 1, "images[0] has no 'file_name'"),
    Case(
        "onnx impostor with our metadata",
        f"{PREDICT} model={{tmp}}/impostor.onnx source={{tmp}}/ok.jpg",
        1,
        "is not a YOLO-NAS export",
        needs="onnx",
    ),
    Case(
        "onnx with external data outside its folder",
        f"{PREDICT} model={{tmp}}/onnx_ext/outside.onnx source={{tmp}}/ok.jpg",
        1,
        "outside the model's folder",
        needs="onnx",
    ),
    Case(
        "openvino folder without its bin",
        f"{PREDICT} model={{tmp}}/nobin_openvino_model source={{tmp}}/ok.jpg",
        1,
        "missing its weights file model.bin",
        needs="openvino",
    ),
    Case(
        "openvino folder with a truncated bin",
        f"{PREDICT} model={{tmp}}/cutbin_openvino_model source={{tmp}}/ok.jpg",
        1,
        "truncated or damaged",
        needs="openvino",
    ),
    Case("imgsz too large for OpenCV", "predict model={tiny} imgsz=100000 source={tmp}/ok.jpg", 2, "from 1 to 8192"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[ServedURL]:
    """The module's HTTP server on 127.0.0.1 (what it serves is set up by `write_hostile_files`)."""
    with serve({}) as base:
        yield base


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, server: ServedURL) -> Path:
    tmp = tmp_path_factory.mktemp("bad_inputs")
    setup_files(tmp)
    write_hostile_files(tmp, server)
    return tmp


def run(
    tokens: list[str], cwd: Path, env_extra: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "YOLONAS_DEBUG"}
    env.update(env_extra or {})
    return subprocess.run([str(SCRIPT), *tokens], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


THIRD_PARTY_TEMP = {".ses"}  # onnxruntime writes its session id to $TMPDIR/.ses when imported


def no_partial_files(root: Path) -> list[Path]:
    """Temporary or half-written files under `root`. Not counted: a `.part` in a weights cache (kept on purpose
    so that an interrupted download resumes, see weights/download.py) and third-party files in $TMPDIR."""
    found = []
    for path in root.rglob("*"):
        if not (path.name.endswith((".tmp", ".part")) or path.name.startswith(".")):
            continue
        if path.name.endswith(".part") and path.parent.name == "cache":
            continue
        if path.parent == root / "sys" / "tmp" and path.name in THIRD_PARTY_TEMP:
            continue
        found.append(path)
    return found


def test_the_matrix_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, workspace: Path, server: ServedURL, tmp_path: Path) -> None:
    if case.name == "export tensorrt without tensorrt" and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.needs} is not installed")
    names = {"tiny": workspace / "tiny.pth", "tmp": workspace, "base": str(server), "cwd": tmp_path}
    tokens = case.tokens.format(**names).split()
    env = {"YOLONAS_WEIGHTS_LOCK": str(workspace / "lock.json"), "YOLONAS_WEIGHTS_DIR": str(workspace / "cache")}
    if "yolo_nas" in case.tokens:
        env = {"YOLONAS_WEIGHTS_DIR": str(tmp_path / "cache")}
    (tmp_path / "sys" / "tmp").mkdir(parents=True)  # the temporary folder of the run (TMPDIR), inside the case
    env["TMPDIR"] = str(tmp_path / "sys" / "tmp")
    env.update({key: value.format(**names) for key, value in case.env})
    if case.prepare is not None:
        case.prepare(tmp_path)
    done = run(tokens, cwd=tmp_path, env_extra=env, timeout=case.timeout)
    assert done.returncode == case.code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "[ERROR" not in done.stderr and "[ WARN" not in done.stderr  # OpenCV's own log lines
    if case.code:
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, done.stderr
        assert case.message in errors[0], errors[0]
    assert case.warning in done.stderr, done.stderr
    if case.check is not None:
        case.check(tmp_path)
    assert no_partial_files(tmp_path) == []


def test_two_processes_downloading_the_same_weights_take_turns(
    workspace: Path, server: ServedURL, tmp_path: Path
) -> None:
    """Both start at once on an empty cache: one downloads, the other waits for it and uses the finished file
    (without the lock both wrote into the same .part, and the hash of the spliced bytes was recorded)."""
    env = {k: v for k, v in os.environ.items() if k != "YOLONAS_DEBUG"}
    env.update(YOLONAS_WEIGHTS_LOCK=str(workspace / "lock.json"), YOLONAS_WEIGHTS_DIR=str(tmp_path / "cache"))
    before = len(server.requests_for("/w/racy.pt"))
    procs = [
        subprocess.Popen(
            [str(SCRIPT), "info", "model=racy.pt"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=180)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    good = (workspace / "tiny.pth").read_bytes()
    assert (tmp_path / "cache" / "racy.pt").read_bytes() == good
    record = json.loads((tmp_path / "cache" / "weights.lock.json").read_text())["weights"]["racy.pt"]
    assert record["sha256"] == hashlib.sha256(good).hexdigest() and record["size"] == len(good)
    assert len(server.requests_for("/w/racy.pt")) - before == 1  # the second process downloaded nothing
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["racy.pt", "weights.lock.json"]


@pytest.mark.slow
def test_a_trickling_weights_server_is_given_up(workspace: Path, tmp_path: Path) -> None:
    """One byte every half second never trips the socket timeout: the stall rule (16 KiB per 15 s) stops it."""
    env = {"YOLONAS_WEIGHTS_LOCK": str(workspace / "lock.json"), "YOLONAS_WEIGHTS_DIR": str(tmp_path / "cache")}
    started = time.monotonic()
    done = run(["info", "model=slow.pt"], cwd=tmp_path, env_extra=env, timeout=120)
    assert done.returncode == 1 and "stalled" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "cache" / "slow.pt").exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_ctrl_c_and_termination_leave_complete_files_and_say_how_far_they_got(
    workspace: Path, tmp_path: Path, signum: int, code: int
) -> None:
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
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == code
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


def test_termination_during_export_leaves_no_file_and_no_temporary_folder(s_checkpoint: Path, tmp_path: Path) -> None:
    """SIGTERM while the ONNX export runs: exit 143, no export and no temporary file beside the weights, no
    temporary folder in $TMPDIR (only torch's own compile cache, which a finished export leaves too). The S
    model, whose export takes seconds (the tiny one's takes 0.4 s: the signal could arrive after it)."""
    weights = tmp_path / "w" / "model.pth"
    weights.parent.mkdir()
    weights.write_bytes(s_checkpoint.read_bytes())
    temp = tmp_path / "sys" / "tmp"
    temp.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "YOLONAS_DEBUG"}
    env["TMPDIR"] = str(temp)
    args = [str(SCRIPT), "export", f"model={weights}", "imgsz=64", "format=onnx"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # bounded: the process ends, at the latest when it finishes the export
        if line.startswith("Exporting "):
            time.sleep(0.2)  # inside the export (tracing S takes seconds)
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, rest
    assert "terminated by SIGTERM" in rest and "Traceback" not in rest
    assert sorted(p.name for p in weights.parent.iterdir()) == ["model.pth"]
    assert [p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_")] == []
