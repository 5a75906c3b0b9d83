"""GPU check for export: TensorRT FP32/FP16/INT8 engines (and the in-graph NMS on a dynamic engine), ONNX
Runtime on CUDA where installed, and TorchScript on CUDA, each compared with the torch model on the GPU.

Self-contained: makes YOLO-NAS S weights from the fixture formula (`weights.synthetic`) and a calibration set
from the bundled photos (and their mirror images) in a temporary folder. Run: bash scripts/gpu_check.sh
(or python scripts/gpu_check.py [--imgsz 640]). Prints one line per check and exits 1 when a check fails;
a check whose package is missing is reported as SKIP with the missing piece.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from yolonas_cli import NAS
from yolonas_cli.cfg import ExportArgs
from yolonas_cli.core import console
from yolonas_cli.data.datasets.photos import PHOTOS, write_photo_dataset
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.engine.postprocess import postprocess
from yolonas_cli.formats.exported import open_exported
from yolonas_cli.formats.int8 import detection_agreement
from yolonas_cli.formats.pytorch import TorchBackend
from yolonas_cli.modes.export import export_model
from yolonas_cli.weights.synthetic import synthetic_torch_state_dict_from_files

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # data files (key list, BatchNorm stats)
RESULTS: list[tuple[str, str, str]] = []  # (status, check, details)


class Skip(Exception):
    """Raised by a check that cannot run here (the message says why)."""


class Setup:
    """Weights, calibration data and the torch reference, shared by every check."""

    def __init__(self, folder: Path, imgsz: int, device: str):
        self.folder, self.imgsz, self.device_name = folder, imgsz, device
        self.weights = folder / "yolo_nas_s.pt"
        torch.save(
            {
                "net": synthetic_torch_state_dict_from_files(
                    FIXTURES / "keys/yolo_nas_s.keys", FIXTURES / "yolo_nas_s_bnstats.npz"
                )
            },
            self.weights,
        )
        self.data = write_photo_dataset(folder / "calib")
        self.images = [cv2.imread(str(p)) for p in PHOTOS]
        self.device = torch.device(device)
        self.nas = NAS(self.weights).fuse()
        # the torch engine's own backend: FP32 without cuDNN's TF32 (which alone moves boxes ~0.3 px)
        self.reference = TorchBackend(self.nas.model, self.device)

    def batch(self, hw: tuple[int, int], count: int) -> np.ndarray:
        return np.stack([Letterbox.for_image(im.shape[:2], hw).apply(im) for im in self.images[:count]])

    def torch_outputs(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, scores = self.reference(batch)
        return boxes.float(), scores.float()

    def export(self, name: str, **kwargs) -> Path:
        """Export a copy of the weights named `name` (so the outputs do not overwrite each other)."""
        weights = Path(shutil.copy(self.weights, self.folder / f"{name}.pt"))
        return export_model(NAS(weights), ExportArgs(model=str(weights), imgsz=self.imgsz, **kwargs))

    def detections(self, path: Path | None) -> list[np.ndarray]:
        """Predict-setting detections (conf 0.25) on the photos, from an exported file or the torch model."""
        settings = EngineSettings(imgsz=(self.imgsz, self.imgsz))
        engine = NAS(path if path is not None else self.weights).make_engine(settings, device=self.device_name)
        return [engine.run_batch([image])[0][0] for image in self.images]


def record(status: str, name: str, details: str) -> None:
    RESULTS.append((status, name, details))
    print(f"{status:4s} {name}: {details}", flush=True)


def check(name: str, needs: tuple[str, ...] = ()) -> Callable:
    """Run a check function, recording PASS/FAIL/SKIP; exceptions are failures with their message."""

    def wrap(fn: Callable[[Setup], str]) -> Callable[[Setup], None]:
        def run(setup: Setup) -> None:
            missing = [m for m in needs if importlib.util.find_spec(m) is None]
            if missing:
                record("SKIP", name, f"{', '.join(missing)} not installed")
                return
            started = time.perf_counter()
            try:
                details = fn(setup)
                record("PASS", name, f"{details} ({time.perf_counter() - started:.0f}s)")
            except Skip as exc:
                record("SKIP", name, str(exc))
            except AssertionError as exc:
                record("FAIL", name, str(exc))
            except Exception as exc:  # report and go on with the other checks
                record("FAIL", name, f"{type(exc).__name__}: {exc}")
                traceback.print_exc()

        return run

    return wrap


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max()) if a.numel() else 0.0


def compare_decoded(setup: Setup, path: Path, box_tol: float, score_tol: float, sizes: tuple) -> str:
    """Decoded outputs of an exported model vs torch FP32 on CUDA, batch 1 and 3, for each size."""
    backend = open_exported(path, setup.device_name)
    worst_box = worst_score = 0.0
    for hw in sizes:
        for count in (1, 3):
            batch = setup.batch(hw, count)
            boxes, scores = backend(batch)
            ref_boxes, ref_scores = setup.torch_outputs(batch)
            worst_box = max(worst_box, max_diff(boxes, ref_boxes))
            worst_score = max(worst_score, max_diff(scores, ref_scores))
    assert worst_box <= box_tol and worst_score <= score_tol, (
        f"max |box diff| {worst_box:.2e} px (tol {box_tol}), max |score diff| {worst_score:.2e} (tol {score_tol})"
    )
    return f"max |box diff| {worst_box:.2e} px, max |score diff| {worst_score:.2e}"


def compare_agreement(setup: Setup, path: Path, min_recall: float, min_iou: float) -> str:
    a = detection_agreement(setup.detections(None), setup.detections(path))
    text = (
        f"recall {a.recall:.3f} of {a.fp32_detections} torch FP32 detections, mean IoU {a.mean_iou:.3f}, "
        f"mean score change {a.score_drift:.4f}"
    )
    assert a.recall >= min_recall and a.mean_iou >= min_iou, f"{text} (need recall >= {min_recall}, IoU >= {min_iou})"
    return text


def latency_ms(path: Path, setup: Setup, runs: int = 50) -> float:
    backend = open_exported(path, setup.device_name)
    batch = setup.batch((setup.imgsz, setup.imgsz), 1)
    for _ in range(5):
        backend(batch)
    backend.synchronize()
    started = time.perf_counter()
    for _ in range(runs):
        backend(batch)
    backend.synchronize()
    return (time.perf_counter() - started) * 1e3 / runs


@check("TensorRT FP32 engine (static) vs torch", ("tensorrt", "onnx"))
def trt_fp32(setup: Setup) -> str:
    path = setup.export("trt_fp32", format="engine")
    size = (setup.imgsz, setup.imgsz)
    return compare_decoded(setup, path, 0.02, 1e-4, (size,)) + f", {latency_ms(path, setup):.2f} ms/img"


@check("TensorRT FP16 engine vs torch FP32", ("tensorrt", "onnx"))
def trt_fp16(setup: Setup) -> str:
    path = setup.export("trt_fp16", format="engine", half=True)
    return compare_agreement(setup, path, 0.85, 0.9) + f", {latency_ms(path, setup):.2f} ms/img"


@check("TensorRT INT8 engine (QDQ) vs torch FP32", ("tensorrt", "onnx", "onnxruntime"))
def trt_int8(setup: Setup) -> str:
    path = setup.export("trt_int8", format="engine", int8=True, data=str(setup.data))
    return compare_agreement(setup, path, 0.6, 0.85) + f", {latency_ms(path, setup):.2f} ms/img"


@check("TensorRT dynamic FP32 engine with NMS vs torch pipeline", ("tensorrt", "onnx"))
def trt_nms(setup: Setup) -> str:
    path = setup.export("trt_nms", format="engine", dynamic=True, nms=True, batch=4)
    backend = open_exported(path, setup.device_name)
    counts, worst = 0, 0.0
    half = setup.imgsz // 2 // 32 * 32
    for hw in ((setup.imgsz, setup.imgsz), (half, setup.imgsz)):
        for count in (1, 3):
            batch = setup.batch(hw, count)
            got = backend(batch)
            want = postprocess(*setup.torch_outputs(batch), conf=0.25, iou=0.7, max_det=300)
            for g, w in zip(got, want):
                assert g.shape == w.shape, f"{hw} x{count}: {len(g)} detections, torch has {len(w)}"
                worst = max(worst, max_diff(g[:, :4], w[:, :4]))
                counts += len(g)
    assert worst <= 0.05, f"max |box diff| {worst:.2e} px"
    return f"{counts} detections equal in count and class, max |box diff| {worst:.2e} px"


@check("ONNX Runtime CUDA (dynamic FP32) vs torch", ("onnx", "onnxruntime"))
def ort_cuda(setup: Setup) -> str:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise Skip("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    path = setup.export("ort", dynamic=True)
    half = setup.imgsz // 2 // 32 * 32
    return compare_decoded(setup, path, 0.02, 1e-4, ((setup.imgsz, setup.imgsz), (half, setup.imgsz)))


@check("TorchScript traced on CUDA vs torch")
def torchscript_cuda(setup: Setup) -> str:
    path = setup.export("ts", format="torchscript", device=setup.device_name, dynamic=True)
    half = setup.imgsz // 2 // 32 * 32
    return compare_decoded(setup, path, 1e-4, 1e-5, ((setup.imgsz, setup.imgsz), (half, setup.imgsz)))


CHECKS = (trt_fp32, trt_fp16, trt_int8, trt_nms, ort_cuda, torchscript_cuda)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cuda:0", help="cpu only to smoke-test this script")
    args = parser.parse_args()
    if args.device != "cpu" and not torch.cuda.is_available():
        print("FAIL no CUDA device: torch sees no GPU")
        return 1
    trt = "not installed" if importlib.util.find_spec("tensorrt") is None else __import__("tensorrt").__version__
    gpu = torch.cuda.get_device_name(0) if args.device != "cpu" else "cpu"
    print(f"device {gpu}, torch {torch.__version__}, tensorrt {trt}", flush=True)
    console.set_verbose(False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        setup = Setup(Path(folder), args.imgsz, args.device)
        for run in CHECKS:
            run(setup)
    failed = [name for status, name, _ in RESULTS if status == "FAIL"]
    elapsed = time.perf_counter() - started
    print(
        f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed or skipped in {elapsed:.0f}s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
