"""The Python API (`NAS`), `yolo-nas info`, loading checks, name resolution through weights.lock and the
device choice."""

from __future__ import annotations

import collections
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from formula import FIXTURES, formula_torch_state_dict, read_keys
from httpserver import serve
from yolonas_cli import NAS
from yolonas_cli.cli.app import app
from yolonas_cli.core.devices import resolve_half, select_device
from yolonas_cli.core.errors import UsageError, WeightsError
from yolonas_cli.core.version import __version__
from yolonas_cli.model.blocks import QARepVGGBlock, reparameterize_model
from yolonas_cli.model.yolo_nas import arch_from_state_dict, build_model
from yolonas_cli.weights.checkpoint import save_checkpoint

runner = CliRunner()


def tiny_forward_reference() -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    with np.load(FIXTURES / "yolo_nas_tiny_forward_2x128x128.npz") as data:
        ref = {k: data[k] for k in data.files}
    return torch.from_numpy((ref["image_u8"] / 255.0).astype(np.float32)), ref


@pytest.mark.parametrize("name", ["yolo_nas_tiny_sg371_model.pt", "yolo_nas_tiny_sg_checkpoint.pth"])
def test_original_files_load_without_super_gradients_and_match_its_outputs(name):
    model = NAS(FIXTURES / name)
    assert model.loaded.file_format == ("sg-model-pickle" if name.endswith(".pt") else "sg-checkpoint")
    assert model.names[0] == "person" and len(model.names) == 80
    x, ref = tiny_forward_reference()
    with torch.no_grad():
        boxes, scores = model.model(x)
    assert np.abs(boxes.numpy() - ref["boxes"]).max() <= 1e-3
    assert np.abs(scores.numpy() - ref["scores"]).max() <= 1e-5


def test_fuse_is_in_place_returns_self_and_keeps_outputs():
    model = NAS(FIXTURES / "yolo_nas_tiny_sg_checkpoint.pth")
    x, ref = tiny_forward_reference()
    assert model.fuse() is model and model.fused
    assert all(block.fused for block in model.model.modules() if isinstance(block, QARepVGGBlock))
    with torch.no_grad():
        boxes, scores = model.model(x)
    assert np.abs(boxes.numpy() - ref["boxes"]).max() <= 1e-2
    assert np.abs(scores.numpy() - ref["scores"]).max() <= 1e-4


def parameters_from_keys(keys: list[tuple[str, tuple[int, ...]]]) -> tuple[int, int]:
    """(unfused, fused) parameter counts read off the original's key file alone: unfused, every tensor but
    the BatchNorm buffers; fused, a QARepVGG block (one holding `rbr_reparam`) keeps only `rbr_reparam`, and
    every other BatchNorm becomes the bias of its convolution (its channel count)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    unfused = sum(math.prod(shape) for key, shape in keys if not key.endswith(buffers))
    blocks = {key[: -len(".rbr_reparam.weight")] for key, _ in keys if key.endswith(".rbr_reparam.weight")}
    fused = 0
    for key, shape in keys:
        block = next((b for b in blocks if key.startswith(b + ".")), None)
        leaf = key.rsplit(".", 2)
        if block is not None:
            fused += math.prod(shape) if ".rbr_reparam." in key else 0
        elif len(leaf) == 3 and leaf[1] == "bn":
            fused += math.prod(shape) if leaf[2] == "weight" else 0  # the folded bias
        elif not key.endswith(buffers):
            fused += math.prod(shape)
    return unfused, fused


def torch_counted_gflops(model: torch.nn.Module, size: int) -> float:
    """GFLOPs of one [1,3,size,size] forward as torch's own FlopCounterMode counts them (2 x MACs of every
    aten.convolution, the convention `info` states), independent of our counting hooks."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def test_info_reports_counts_flops_and_file_facts(tmp_path):
    """Parameters counted from the key file, GFLOPs by torch's counter on the architecture it describes
    (S: 19,053,888 / 12,167,600 parameters, 33.88 / 31.80 GFLOPs at 640)."""
    path = tmp_path / "s.pth"
    torch.save({"net": formula_torch_state_dict("s")}, path)
    facts = NAS(path).info(imgsz=640, verbose=False)
    assert facts["model"] == "yolo_nas_s" and facts["classes"] == 80
    keys = read_keys("s")
    assert (facts["parameters"], facts["parameters_fused"]) == parameters_from_keys(keys)
    model = build_model(arch_from_state_dict(dict(keys))).eval()
    assert facts["gflops"] == pytest.approx(torch_counted_gflops(model, 640), abs=0.005)  # info rounds to 0.01
    reparameterize_model(model)
    assert facts["gflops_fused"] == pytest.approx(torch_counted_gflops(model, 640), abs=0.005)
    assert facts["input_size"] == [640, 640] and facts["format"] == "sg-checkpoint"
    import hashlib

    assert facts["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_info_cli_prints_every_field(tiny_checkpoint):
    result = runner.invoke(app, ["info", f"model={tiny_checkpoint}", "imgsz=320"])
    assert result.exit_code == 0, result.output
    for field in (
        "model",
        "file",
        "format",
        "sha256",
        "classes",
        "input size",
        "layers",
        "parameters",
        "GFLOPs",
        "licence",
    ):
        assert any(line.startswith(field) for line in result.stdout.splitlines()), field
    unfused, fused = parameters_from_keys(read_keys("tiny"))
    assert "320x320" in result.stdout and f"{unfused:,} (fused {fused:,})" in result.stdout


def test_custom_class_count_and_names_from_our_own_format(tmp_path):
    state = formula_torch_state_dict("tiny")
    for key in list(state):
        if "cls_pred" in key:
            state[key] = state[key][:3].clone()
    path = save_checkpoint(tmp_path / "three.pt", state, class_names=["a", "b", "c"], model_name="custom")
    model = NAS(path)
    assert model.names == {0: "a", 1: "b", 2: "c"}
    results = model(np.full((64, 96, 3), 127, np.uint8), imgsz=96, conf=0.0, verbose=False)
    assert set(results[0].boxes.cls.int().tolist()) <= {0, 1, 2}


def test_wrong_shapes_and_names_are_clear_errors(tmp_path):
    state = formula_torch_state_dict("tiny")
    state["heads.head2.cls_pred.weight"] = state["heads.head2.cls_pred.weight"][:5].clone()
    torch.save({"net": state}, tmp_path / "bad_shape.pth")
    with pytest.raises(WeightsError, match=r"bad_shape\.pth.*heads\.head2\.cls_pred\.weight.*\[5, 16, 1, 1\]"):
        NAS(tmp_path / "bad_shape.pth")
    state = formula_torch_state_dict("tiny")
    del state["neck.neck2.conv.conv.weight"]
    torch.save({"net": state}, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing tensors"):
        NAS(tmp_path / "missing.pth")
    torch.save({"net": collections.OrderedDict(a=torch.zeros(3))}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a YOLO-NAS checkpoint"):
        NAS(tmp_path / "other.pth")
    save_checkpoint(tmp_path / "names.pt", formula_torch_state_dict("tiny"), class_names=["x"], model_name="m")
    with pytest.raises(WeightsError, match="1 class names but its head predicts 80"):
        NAS(tmp_path / "names.pt")


def test_bad_weights_from_the_cli_exit_1_with_one_line(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 truncated")
    result = runner.invoke(app, ["info", f"model={tmp_path / 'broken.pt'}"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "broken.pt" in result.stderr


def test_model_name_resolves_through_the_lock_download_and_cache(tmp_path, monkeypatch):
    payload = (FIXTURES / "yolo_nas_tiny_sg_checkpoint.pth").read_bytes()
    import hashlib

    with serve({"/w/tiny.pth": payload}) as base:
        lock = {
            "version": 1,
            "aliases": {"tiny": "tiny.pth"},
            "weights": {
                "tiny.pth": {
                    "urls": [f"{base}/w/tiny.pth"],
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "size": len(payload),
                    "variant": "s",
                    "input_size": [640, 640],
                    "num_classes": 80,
                    "class_names": "coco80",
                    "format": "sg-checkpoint",
                    "licence": {"name": "test licence", "url": "https://example.invalid/l"},
                }
            },
        }
        (tmp_path / "lock.json").write_text(json.dumps(lock))
        monkeypatch.setenv("YOLONAS_WEIGHTS_LOCK", str(tmp_path / "lock.json"))
        monkeypatch.setenv("YOLONAS_WEIGHTS_DIR", str(tmp_path / "cache"))
        monkeypatch.chdir(tmp_path)
        first = runner.invoke(app, ["info", "model=tiny"])
        assert first.exit_code == 0, first.output
        assert "test licence" in first.stderr
    assert (tmp_path / "cache" / "tiny.pth").read_bytes() == payload
    second = runner.invoke(app, ["info", "model=tiny"])  # server gone: served from the verified cache
    assert second.exit_code == 0 and "test licence" not in second.stderr
    assert "test licence (https://example.invalid/l)" in second.stdout


def test_device_choice(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type in ("cpu", "mps")
    for spec in ("cuda", "cuda:1", 0):
        with pytest.raises(UsageError, match="no CUDA GPU is available; use device=cpu"):
            select_device(spec)
    with pytest.raises(UsageError, match="not a device"):
        select_device("tpu")
    assert resolve_half(True, torch.device("cpu")) is False
    assert resolve_half(True, torch.device("cuda")) is True


def test_cuda_without_gpu_from_the_cli_is_exit_2(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["predict", f"model={tiny_checkpoint}", "device=cuda", "save=False"])
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr


def test_importing_the_package_stays_light():
    import subprocess
    import sys

    heavy = "('torch', 'cv2', 'onnxruntime', 'openvino')"
    code = f"import sys, yolonas_cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert done.stdout.strip() == "[]"
    assert Path(sys.executable).parent.joinpath("yolo-nas").exists()


def test_exported_model_through_the_api_info_and_predict(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    import shutil

    weights = tmp_path / "tiny.pth"
    shutil.copy(tiny_checkpoint, weights)
    path = NAS(weights).export(format="onnx", imgsz=160, dynamic=True)
    assert path == tmp_path / "tiny.onnx" and oct(path.stat().st_mode & 0o777) != "0o600"
    exported = NAS(path)
    assert exported.is_exported and exported.names == NAS(weights).names
    facts = exported.info(verbose=False)
    assert facts["format"] == "exported onnx" and facts["input_size"] == [160, 160] and facts["classes"] == 80
    with pytest.raises(UsageError, match="exported model"):
        _ = exported.model
    ours = NAS(weights)(imgsz=160, conf=0.05, verbose=False)
    theirs = exported(imgsz=160, conf=0.05, verbose=False)
    assert [len(r.boxes) for r in ours] == [len(r.boxes) for r in theirs]
    for a, b in zip(ours, theirs):
        assert np.abs(a.boxes.xyxy.numpy() - b.boxes.xyxy.numpy()).max(initial=0) < 5e-3


def test_verbose_false_is_silent_for_predict_val_and_export(tiny_checkpoint, tmp_path, capfd, monkeypatch):
    """Python calls with verbose=False print nothing at all (file descriptors 1 and 2), as the CLI's; the
    same calls verbose do print (so the capture sees them)."""
    import shutil

    from yolonas_cli.data.datasets.photos import PHOTOS, write_photo_dataset

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)  # show=True below: headless, its warning must stay silent too
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    data = write_photo_dataset(tmp_path / "data")
    (tmp_path / "data" / "labels" / "val").mkdir(parents=True)
    for photo in PHOTOS:
        (tmp_path / "data" / "labels" / "val" / f"{photo.stem}.txt").write_text("0 0.5 0.5 0.4 0.6\n")
    model = NAS(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))
    capfd.readouterr()

    results = model.predict(imgsz=128, conf=0.01, save=True, save_txt=True, save_crop=True, verbose=False)
    streamed = list(model.predict("rocket.jpg", imgsz=128, stream=True, show=True, verbose=False))
    metrics = model.val(data=str(data), imgsz=128, batch=2, verbose=False)
    exported = model.export(format="torchscript", imgsz=128, verbose=False)
    quiet = capfd.readouterr()
    assert (quiet.out, quiet.err) == ("", "")
    assert len(results) == 4 and len(streamed) == 1 and metrics.box.map >= 0 and exported.is_file()
    assert (tmp_path / "runs/detect/predict/labels").is_dir() and (tmp_path / "runs/detect/val/metrics.json").is_file()

    model.predict(imgsz=128, verbose=True)
    model.val(data=str(data), imgsz=128, batch=2)
    model.export(format="torchscript", imgsz=128)
    loud = capfd.readouterr()
    assert "image 1/4" in loud.err and "Results saved to" in loud.err and "all " in loud.out
    assert loud.err.count("Predict:  yolo-nas predict model=") == 1  # the hint once per export
    assert loud.err.count(f"yolo-nas {__version__}, Python ") == 1  # the header once per model, as Ultralytics'
    assert loud.err.index(f"yolo-nas {__version__}, Python ") < loud.err.index("image 1/4")
