"""`yolo-nas benchmark`: every backend timed the same way, on the same photo, against the original's way.

    from yolonas_cli.modes.benchmark.measure import run_benchmark, render_table, save_report
    report = run_benchmark(make_args("benchmark", model="yolo_nas_s.pt", formats=["pytorch", "onnx"]))

What one row measures (after `warmup` untimed calls, `runs` timed calls of each kind, garbage collection
paused while timing):

- model: the backend alone on a ready input batch (the input conversion inside the backend, the forward
  pass, a device sync);
- end-to-end: preprocess (letterbox of the decoded photo) + inference + postprocess (NMS, boxes mapped back
  to the photo). Decoding from disk is excluded: the photo is decoded once, before timing.

Times are per batch; median and 90th percentile are printed, images/s is `batch / median end-to-end`.
Achieved GFLOP/s is `FLOPs of the fused model (2 x MACs of every convolution) x batch / median model
time`, the same useful work for every row (the unfused baseline executes more, and is credited the same).

The photo is the bundled `rocket.jpg` resized to 1280x720 (a 720p photo), repeated `batch` times.

Rows:

- the baseline: the unfused model in eval mode run eagerly (`torch.no_grad`), with the original's kind of
  preprocessing (OpenCV resize and centre pad, RGB, `float64 / 255` cast to float32, CHW) and the same
  postprocessing as every other row;
- PyTorch: the fused model through the shared engine (what `yolo-nas predict` runs);
- each exported format (exported once into `<project>/exports/`, reused while it matches the weights, size,
  batch and precision), FP32, FP16 (`half=True`, GPU only) and INT8 (`int8=True`, where the format has it).

Agreement is measured against the fused PyTorch FP32 model on the same input: the largest box-coordinate
difference (input pixels) and score difference over the reference's `TOP_K` highest-scoring anchors, and
how many of the reference's detections the row reproduces (same class, IoU >= 0.5). With `data=` (a dataset
YAML with labels) each row's mAP50-95 on its val split is measured as well (conf 0.001, as `val` does).

The machine's matrix-multiply peak is measured in the same run: a `PEAK_SIZE`^3 float32 GEMM on the same
threads, timed through `torch.mm` (the BLAS torch links) and, on a CPU, as a 1x1 convolution through oneDNN
(the library torch's convolutions use); the peak is the faster of the two. On a GPU the FP16 peak is
measured too and used for FP16 and INT8 rows.
"""

from __future__ import annotations

import copy
import csv
import gc
import io
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np
import torch

from yolonas_cli.cfg import BenchmarkArgs
from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError, YoloNasError
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.engine.engine import Engine, EngineSettings, Prepared
from yolonas_cli.engine.letterbox import PAD_VALUE, Letterbox, to_bgr_uint8

if TYPE_CHECKING:
    from yolonas_cli.api import NAS

__all__ = [
    "BenchmarkReport",
    "Row",
    "Variant",
    "matmul_peak",
    "plan_variants",
    "render_table",
    "run_benchmark",
    "save_report",
]

PHOTO = Path(__file__).parents[2] / "assets" / "rocket.jpg"
PHOTO_HW = (720, 1280)
TOP_K = 100  # anchors compared for the box/score agreement
MATCH_IOU = 0.5
PEAK_SIZE = 2048
PEAK_RUNS = 5
MAP_CONF = 0.001
STAGES = ("preprocess", "inference", "postprocess")
TITLES = {
    "pytorch": "PyTorch",
    "torchscript": "TorchScript",
    "onnx": "ONNX Runtime",
    "openvino": "OpenVINO",
    "engine": "TensorRT",
}
_FORMAT_MODULES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",), "engine": ("tensorrt",)}


class Unavailable(YoloNasError):
    """A row that cannot be measured here (a missing package, exporter or backend, or a CPU-only device)."""


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Stats:
    """Summary of timed samples in milliseconds."""

    median: float
    p90: float
    mean: float
    min: float
    count: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        values = np.asarray(samples, dtype=np.float64)
        return cls(
            float(np.median(values)),
            float(np.percentile(values, 90)),
            float(values.mean()),
            float(values.min()),
            int(values.size),
        )


@dataclass(frozen=True)
class Variant:
    """One row to measure: a format at a precision (`baseline`: the unfused eager original-style row)."""

    format: str
    precision: str  # fp32, fp16, int8
    baseline: bool = False

    @property
    def title(self) -> str:
        if self.baseline:
            return "PyTorch eager, unfused (baseline)"
        return TITLES.get(self.format, self.format)


@dataclass
class Row:
    """The measurements of one variant (`status` is "ok", or why it was not measured)."""

    variant: Variant
    status: str = "ok"
    file: str | None = None
    size_mb: float | None = None
    model: Stats | None = None
    e2e: Stats | None = None
    stages: dict[str, float] = field(default_factory=dict)  # median ms per batch of each stage
    images_per_s: float | None = None
    gflops: float | None = None
    peak_pct: float | None = None
    agreement: dict[str, Any] = field(default_factory=dict)
    speedup: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A flat record (the CSV columns; the JSON row)."""
        v, a = self.variant, self.agreement
        return {
            "format": v.format,
            "title": v.title,
            "precision": v.precision,
            "baseline": v.baseline,
            "status": self.status,
            "file": self.file,
            "size_mb": _sig(self.size_mb),
            "model_median_ms": _round(self.model.median if self.model else None),
            "model_p90_ms": _round(self.model.p90 if self.model else None),
            "e2e_median_ms": _round(self.e2e.median if self.e2e else None),
            "e2e_p90_ms": _round(self.e2e.p90 if self.e2e else None),
            **{f"{stage}_ms": _round(self.stages.get(stage)) for stage in STAGES},
            "images_per_s": _sig(self.images_per_s),
            "gflops": _sig(self.gflops),
            "peak_pct": _sig(self.peak_pct),
            "box_diff_px": _sig(a.get("box_diff_px"), 3),
            "score_diff": _sig(a.get("score_diff"), 3),
            "detections_matched": a.get("matched"),
            "detections_reference": a.get("reference"),
            "map50_95": _round(a.get("map50_95"), 4),
            "map50_95_diff": _round(a.get("map50_95_diff"), 4),
            "speedup": _sig(self.speedup, 3),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _sig(value: float | None, digits: int = 4) -> float | None:
    """`value` to `digits` significant digits (None stays None)."""
    return None if value is None else float(f"{float(value):.{digits}g}")


@dataclass(frozen=True)
class Peak:
    """The matrix-multiply peak: GFLOP/s per method and precision, and the best per precision."""

    methods: dict[str, float]  # e.g. {"torch.mm fp32": 230.1, "oneDNN fp32": 431.0}
    size: int
    threads: int

    def best(self, precision: str = "fp32") -> float | None:
        values = [v for k, v in self.methods.items() if k.endswith(precision)]
        return max(values) if values else None


@dataclass
class BenchmarkReport:
    """Everything one benchmark run measured."""

    rows: list[Row]
    peak: Peak
    flops: int  # per image, fused model
    settings: dict[str, Any]
    environment: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        peak = {"methods": self.peak.methods, "size": self.peak.size, "threads": self.peak.threads}
        return {
            "settings": self.settings,
            "environment": self.environment,
            "peak_gflops": peak,
            "flops_per_image": self.flops,
            "summary": self.summary,
            "rows": [r.to_dict() for r in self.rows],
        }


# ---------------------------------------------------------------------------------------------- peak


def _time_ms(fn: Callable[[], Any], runs: int, warmup: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Wall times (ms) of `runs` calls of `fn` (each followed by `sync`) after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
        sync()
    samples = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - start) * 1e3)
    finally:
        if enabled:
            gc.enable()
    return samples


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def matmul_peak(device: torch.device, size: int = PEAK_SIZE, runs: int = PEAK_RUNS) -> Peak:
    """GFLOP/s of a size^3 GEMM: torch.mm (and oneDNN as a 1x1 convolution on a CPU; FP16 too on a GPU)."""
    flop = 2.0 * size**3
    methods: dict[str, float] = {}
    sync = _sync_for(device)
    with torch.inference_mode():
        dtypes = (torch.float32, torch.float16) if device.type == "cuda" else (torch.float32,)
        for dtype in dtypes:
            a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
            label = "fp32" if dtype == torch.float32 else "fp16"
            methods[f"torch.mm {label}"] = _gflops(flop, _time_ms(_mm(a, b), runs, 2, sync))
        if device.type == "cpu":
            methods["oneDNN fp32"] = _gflops(flop, _onednn_gemm_ms(size, runs))
    return Peak(methods, size, torch.get_num_threads())


def _mm(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: torch.mm(a, b)


def _onednn_gemm_ms(size: int, runs: int) -> list[float]:
    """The same GEMM as a channels-last 1x1 convolution (size pixels, size channels and filters): oneDNN."""
    x = torch.randn(1, size, size // 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(size, size, 1, 1).contiguous(memory_format=torch.channels_last)
    return _time_ms(lambda: torch.nn.functional.conv2d(x, w), runs, 2)


def _gflops(flop: float, samples_ms: Sequence[float]) -> float:
    return flop / (float(np.median(samples_ms)) * 1e-3) / 1e9


# ---------------------------------------------------------------------------------------------- variants


def available_formats(device: torch.device) -> list[str]:
    """Formats whose runtime is importable here (TensorRT only with CUDA; OpenVINO only off-GPU)."""
    import importlib.util

    found = ["pytorch", "torchscript"]
    for name, modules in _FORMAT_MODULES.items():
        if all(importlib.util.find_spec(m) is not None for m in modules):
            found.append(name)
    if device.type != "cuda":
        found = [f for f in found if f != "engine"]
    elif "openvino" in found:
        found.remove("openvino")
    return found


def plan_variants(formats: Sequence[str], device: torch.device, half: bool, int8: bool) -> list[Variant]:
    """The rows of a run: the baseline first, then each format at FP32, FP16 and INT8 where they apply."""
    gpu = device.type in ("cuda", "mps")
    variants = [Variant("pytorch", "fp32", baseline=True)]
    for fmt in formats:
        variants.append(Variant(fmt, "fp32"))
        if half and (gpu or fmt == "pytorch"):  # on a CPU only PyTorch's row, to say why there is none
            variants.append(Variant(fmt, "fp16"))
        if int8 and fmt in ("onnx", "openvino", "engine") and not (fmt == "onnx" and gpu):
            variants.append(Variant(fmt, "int8"))
    return variants


# ---------------------------------------------------------------------------------------------- baseline


class EagerBackend:
    """The unfused model as the original runs it: NCHW, eager, under `torch.no_grad` (no inference mode).

    Deliberately not a `TorchBackend`, so that speed-ups added there never reach the baseline."""

    name = "torch-eager"
    fixed_input: tuple[int, int] | None = None

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = device
        self.model = model.eval().to(device=device, dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, scores = self.model(torch.from_numpy(images).to(self.device))
        return boxes, scores

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class OriginalStyleEngine(Engine):
    """The baseline pipeline: the original's kind of preprocessing, float64 arithmetic included."""

    def preprocess(self, images: Sequence[np.ndarray]) -> Prepared:
        boxes = tuple(self.letterbox(img.shape[:2]) for img in images)
        return Prepared(np.stack([original_preprocess(lb, img) for lb, img in zip(boxes, images)]), boxes)


def original_preprocess(lb: Letterbox, image: np.ndarray) -> np.ndarray:
    """Resize, centre pad with 114, BGR->RGB, `float64 / 255` -> float32, HWC->CHW (a copy at each step)."""
    img = to_bgr_uint8(image)
    if lb.resized_hw != lb.orig_hw:
        img = cv2.resize(img, lb.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(
        img, lb.pad_top, lb.pad_bottom, lb.pad_left, lb.pad_right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    rgb = img[:, :, ::-1]
    return np.ascontiguousarray((rgb.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1))


# ---------------------------------------------------------------------------------------------- opening rows


@dataclass
class Opened:
    """A row ready to time: its engine (the backend is `engine.backend`), file and size."""

    engine: Engine
    file: Path | None
    size_mb: float | None


@dataclass
class Context:
    """What every row shares."""

    args: BenchmarkArgs
    nas: NAS
    unfused: torch.nn.Module
    device: torch.device
    settings: EngineSettings
    workspace: Path
    _sources: dict[str, NAS] = field(default_factory=dict)
    _sha256: str | None = None

    def weights_sha256(self) -> str:
        """The sha256 of the weights file (computed once)."""
        from yolonas_cli.weights.download import sha256_file

        if self._sha256 is None:
            self._sha256 = sha256_file(self.nas.path)
        return self._sha256


def open_variant(ctx: Context, variant: Variant) -> Opened:
    """The engine of a row, exporting first when needed. Raises Unavailable or YoloNasError."""
    if variant.baseline:
        backend = EagerBackend(ctx.unfused, ctx.device)
        engine = OriginalStyleEngine(backend, ctx.nas.names, ctx.settings)
        return Opened(engine, ctx.nas.path, _size_mb(ctx.nas.path))
    if variant.format == "pytorch":
        return Opened(_torch_engine(ctx, variant.precision), ctx.nas.path, _size_mb(ctx.nas.path))
    if variant.format == "engine" and ctx.device.type != "cuda":
        raise Unavailable("TensorRT needs an NVIDIA GPU (device=0)")
    exported = open_export(ctx, variant)
    return Opened(exported.make_engine(ctx.settings), exported.path, _size_mb(exported.path))


def _torch_engine(ctx: Context, precision: str) -> Engine:
    """The product's engine (`NAS.make_engine`); FP16 on a fresh copy so that the shared model stays FP32."""
    from yolonas_cli.api import NAS

    if precision == "fp32":
        return ctx.nas.make_engine(ctx.settings, str(ctx.device), half=False)
    if ctx.device.type not in ("cuda", "mps"):
        raise Unavailable("FP16 needs a GPU")
    return NAS(ctx.nas.path).make_engine(ctx.settings, str(ctx.device), half=True)


def _runtime_device(ctx: Context, variant: Variant) -> torch.device:
    """OpenVINO runs on the CPU whatever `device` is; the other formats on the benchmark's device."""
    return torch.device("cpu") if variant.format == "openvino" else ctx.device


def _import(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{what} are not installed ({exc})") from None


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


# ---------------------------------------------------------------------------------------------- exports


def open_export(ctx: Context, variant: Variant) -> Any:
    """The opened export of `variant` from the workspace: reused when its metadata matches, else exported."""
    exporter = _import("yolonas_cli.modes.export", "the exporters")
    registry = _import("yolonas_cli.formats.registry", "the exported-model backends")
    if variant.format not in exporter.FORMATS:
        raise Unavailable(f"no exporter for format={variant.format}")
    source = _source_for(ctx, variant.precision)
    output = exporter.FORMATS[variant.format].output_for(source.path)
    device = _runtime_device(ctx, variant)
    if output.exists():
        existing = _open_quietly(registry, output, device)
        if existing is not None and _matches(existing.metadata, ctx, variant):
            console.info(f"{variant.title} {variant.precision.upper()}: reusing {output}")
            return existing
    path = exporter.export_model(source, _export_args(ctx, variant, source.path))
    return registry.open_exported(path, device)


def _open_quietly(registry: Any, path: Path, device: torch.device) -> Any:
    try:
        return registry.open_exported(path, device)
    except Exception:  # unreadable, or written by another version: export again
        return None


def _source_for(ctx: Context, precision: str) -> NAS:
    """A NAS loaded through a link `<workspace>/<stem>-<h>x<w>-b<batch>-<precision><suffix>` to the weights,
    so that each precision's export gets its own file name (exporters write beside the weights)."""
    from yolonas_cli.api import NAS

    if precision in ctx._sources:
        return ctx._sources[precision]
    h, w = ctx.settings.imgsz
    weights = ctx.nas.path.resolve()
    link = ctx.workspace / f"{weights.stem}-{h}x{w}-b{ctx.args.batch}-{precision}{weights.suffix}"
    _link(weights, link)
    nas = NAS(link)
    ctx._sources[precision] = nas
    return nas


def _link(target: Path, link: Path) -> None:
    """`link` -> `target`: a symlink, else a hard link, else a copy (kept when it already points there)."""
    import shutil

    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == target:
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    for make in (os.symlink, os.link):
        try:
            make(target, link)
            return
        except OSError:
            continue
    shutil.copyfile(target, link)


def _matches(meta: Any, ctx: Context, variant: Variant) -> bool:
    """True when an exported file was made from these weights at this size, batch and precision."""
    return (
        meta.source_sha256 == ctx.weights_sha256()
        and tuple(meta.imgsz) == ctx.settings.imgsz
        and meta.batch == ctx.args.batch
        and meta.precision == variant.precision
        and not meta.nms
        and not meta.dynamic
    )


def _export_args(ctx: Context, variant: Variant, weights: Path) -> Any:
    from yolonas_cli.cfg import ExportArgs

    a = ctx.args
    int8 = variant.precision == "int8"
    device = "cpu" if variant.format == "openvino" else a.device
    return ExportArgs(
        model=str(weights),
        verbose=a.verbose,
        device=device,
        imgsz=a.imgsz,
        format=variant.format,
        batch=a.batch,
        half=variant.precision == "fp16",
        int8=int8,
        data=(a.data or str(calibration_yaml(ctx))) if int8 else None,
    )


def calibration_yaml(ctx: Context) -> Path:
    """A dataset YAML over the bundled sample photos (INT8 calibration when `data=` is not given)."""
    import yaml

    path = ctx.workspace / "calibration_photos.yaml"
    spec = {"path": str(PHOTO.parent), "train": ".", "val": ".", "names": dict(ctx.nas.names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- measuring


def benchmark_images(batch: int) -> list[np.ndarray]:
    """The timed input: the bundled photo resized to 1280x720, `batch` times (decoded once, here)."""
    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    if image is None:
        raise YoloNasError(f"cannot read the bundled photo {PHOTO}")
    photo = cv2.resize(image, PHOTO_HW[::-1], interpolation=cv2.INTER_LINEAR)
    return [photo] * batch


def time_model(engine: Engine, inputs: np.ndarray, runs: int, warmup: int) -> Stats:
    """The backend alone on a ready batch."""
    backend = engine.backend
    return Stats.of(_time_ms(lambda: backend(inputs), runs, warmup, backend.synchronize))


def time_pipeline(
    engine: Engine, images: Sequence[np.ndarray], runs: int, warmup: int
) -> tuple[Stats, dict[str, float]]:
    """Preprocess + inference + postprocess: the end-to-end stats and each stage's median (ms per batch)."""
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}

    def once() -> None:
        speed = engine.run_batch(images)[0][2]  # the engine's own per-stage timing, ms per image
        for stage in STAGES:
            stages[stage].append(speed[stage] * len(images))

    for _ in range(warmup):
        once()
    for samples in stages.values():
        samples.clear()
    total = _time_ms(once, runs, 0)
    return Stats.of(total), {stage: float(np.median(v)) for stage, v in stages.items()}


@dataclass(frozen=True)
class Reference:
    """The fused PyTorch FP32 outputs every row is compared with."""

    boxes: np.ndarray  # [B, N, 4]
    scores: np.ndarray  # [B, N, C]
    top: np.ndarray  # [B, TOP_K] anchor indices with the highest class score
    detections: list[np.ndarray]  # per image [K, 6]
    map50_95: float | None = None


def raw_outputs(engine: Engine, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], Any]:
    """(detections per image, raw backend output) of one end-to-end pass."""
    prepared = engine.preprocess(images)
    raw = engine.infer(prepared)
    engine.backend.synchronize()
    return engine.postprocess(raw, prepared.letterboxes), raw


def make_reference(engine: Engine, images: Sequence[np.ndarray]) -> Reference:
    detections, raw = raw_outputs(engine, images)
    boxes, scores = (t.detach().float().cpu().numpy() for t in raw)
    k = min(TOP_K, scores.shape[1])
    top = np.argsort(-scores.max(axis=2), axis=1, kind="stable")[:, :k]
    return Reference(boxes, scores, top, detections)


def agreement(ref: Reference, detections: list[np.ndarray], raw: Any) -> dict[str, Any]:
    """Box/score differences over the reference's top anchors and the reference detections reproduced."""
    matched = sum(_matched(r, d) for r, d in zip(ref.detections, detections))
    result: dict[str, Any] = {"matched": matched, "reference": sum(len(r) for r in ref.detections)}
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and all(isinstance(t, torch.Tensor) for t in raw):
        boxes, scores = (t.detach().float().cpu().numpy() for t in raw)
        if boxes.shape == ref.boxes.shape and scores.shape == ref.scores.shape:
            rows = np.arange(ref.top.shape[0])[:, None]
            result["box_diff_px"] = float(np.abs(boxes[rows, ref.top] - ref.boxes[rows, ref.top]).max())
            result["score_diff"] = float(np.abs(scores[rows, ref.top] - ref.scores[rows, ref.top]).max())
    return result


def _matched(ref: np.ndarray, det: np.ndarray) -> int:
    """Reference detections with a same-class detection at IoU >= MATCH_IOU (greedy, each used once)."""
    from yolonas_cli.metrics.coco import box_iou_np

    if len(ref) == 0 or len(det) == 0:
        return 0
    iou = box_iou_np(ref[:, :4], det[:, :4])
    iou[ref[:, 5][:, None] != det[:, 5][None, :]] = 0.0
    used = np.zeros(len(det), dtype=bool)
    count = 0
    for i in np.argsort(-ref[:, 4], kind="stable"):
        candidates = np.where(used, -1.0, iou[i])
        j = int(candidates.argmax())
        if candidates[j] >= MATCH_IOU:
            used[j] = True
            count += 1
    return count


def dataset_map(engine: Engine, data: str, batch: int) -> float:
    """mAP50-95 of `engine` on the val split of `data` (conf MAP_CONF; images decoded outside any timing)."""
    from yolonas_cli.data.datasets.dataset import CorruptSample, load_dataset
    from yolonas_cli.modes.val import RunState

    dataset = load_dataset(data, "val")
    s = engine.settings
    settings = EngineSettings(imgsz=s.imgsz, conf=MAP_CONF, iou=s.iou, max_det=s.max_det, batch=batch)
    evaluator = type(engine)(engine.backend, engine.names, settings)
    state = RunState(dataset, None, False)
    for index in range(len(dataset)):
        try:
            sample = dataset.load(index)
        except CorruptSample:
            continue
        image = to_bgr_uint8(sample.image)
        ((det, lb, _),) = evaluator.run_batch([image])
        state.add(sample, det, lb)
    return state.evaluate().stat("mAP50-95")


# ---------------------------------------------------------------------------------------------- one row


def measure(
    ctx: Context, variant: Variant, images: Sequence[np.ndarray], ref: Reference, flops: int, peak: Peak
) -> Row:
    """Open, time and compare one variant; any failure becomes the row's status."""
    row = Row(variant)
    try:
        opened = open_variant(ctx, variant)
    except (Unavailable, MissingExtraError) as exc:
        row.status = f"not available: {exc}"
        return row
    except Exception as exc:  # an exporter or runtime failure must not end the whole benchmark
        row.status = f"failed: {_one_line(exc)}"
        return row
    try:
        _fill(row, opened, ctx.args, images, ref, flops, peak)
    except Exception as exc:
        row.status = f"failed: {_one_line(exc)}"
    return row


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _fill(
    row: Row,
    opened: Opened,
    a: BenchmarkArgs,
    images: Sequence[np.ndarray],
    ref: Reference | None,
    flops: int,
    peak: Peak,
) -> None:
    """Time one opened row; agreement only with a reference, GFLOP/s only with known FLOPs (> 0)."""
    engine = opened.engine
    row.file = str(opened.file) if opened.file else None
    row.size_mb = opened.size_mb
    detections, raw = raw_outputs(engine, images)
    if ref is not None:
        row.agreement = agreement(ref, detections, raw)
    inputs = engine.preprocess(images).inputs
    gc.collect()
    row.model = time_model(engine, inputs, a.runs, a.warmup)
    row.e2e, row.stages = time_pipeline(engine, images, a.runs, a.warmup)
    row.images_per_s = len(images) / (row.e2e.median * 1e-3)
    row.gflops = flops * len(images) / (row.model.median * 1e-3) / 1e9 if flops else None
    best = peak.best(row.variant.precision)  # no INT8 peak is measured: INT8 rows get no percentage
    row.peak_pct = 100.0 * row.gflops / best if best and row.gflops else None
    if a.data:
        row.agreement["map50_95"] = dataset_map(engine, a.data, a.batch)
        if ref is not None and ref.map50_95 is not None:
            row.agreement["map50_95_diff"] = row.agreement["map50_95"] - ref.map50_95


# ---------------------------------------------------------------------------------------------- the run


def run_benchmark(args: BenchmarkArgs) -> BenchmarkReport:
    """Measure every planned row (see the module docstring); prints progress, returns the report."""
    from yolonas_cli.api import NAS
    from yolonas_cli.core.devices import select_device
    from yolonas_cli.model.profile import count_flops

    device = select_device(args.device)
    nas = NAS(args.model, weights_dir=args.weights_dir)
    if nas.is_exported:
        return run_exported_benchmark(args, nas, device)
    unfused = copy.deepcopy(nas.model).eval()
    nas.fuse()
    imgsz = imgsz_pair(args.imgsz)
    settings = EngineSettings(imgsz=imgsz, batch=args.batch)
    ctx = Context(args, nas, unfused, device, settings, _workspace(args))
    formats = args.formats if args.formats is not None else available_formats(device)
    variants = plan_variants(formats, device, args.half, args.int8)
    images = benchmark_images(args.batch)
    load_before = _load()
    ref = _reference(ctx, images)
    flops = count_flops(nas.model, *imgsz)
    console.info(f"Measuring the matrix-multiply peak ({PEAK_SIZE}^3 float32 GEMM, {torch.get_num_threads()} threads)")
    peak = matmul_peak(device)
    rows = []
    for variant in variants:
        console.info(f"Benchmarking {variant.title} {variant.precision.upper()} ...")
        rows.append(measure(ctx, variant, images, ref, flops, peak))
    _speedups(rows)
    report = BenchmarkReport(
        rows, peak, flops, _settings(args, device, imgsz, formats), _environment(device, load_before)
    )
    report.summary = summarize(report)
    return report


def run_exported_benchmark(args: BenchmarkArgs, nas: NAS, device: torch.device) -> BenchmarkReport:
    """An exported file (`model=yolo_nas_s.onnx`, ...) timed as it is: one row, in its own format and
    precision. No baseline, speed-up or agreement (there are no weights to run the reference with: benchmark
    the .pt file to compare formats); FLOPs from the architecture its metadata names (S, M, L), else none."""
    from yolonas_cli.model.profile import variant_flops

    meta = nas.exported_metadata
    assert meta is not None
    if args.formats is not None:
        raise UsageError(
            f"formats= chooses the exports of a weights file; '{nas.path.name}' is an exported "
            f"{TITLES.get(meta.format, meta.format)} model and is timed as it is: drop formats= (or "
            "benchmark the .pt file to compare formats)"
        )
    requested = imgsz_pair(args.imgsz)
    settings = EngineSettings(imgsz=requested, batch=args.batch)
    variant = Variant(meta.format, meta.precision)
    runtime = torch.device("cpu") if meta.format == "openvino" else device
    console.info(f"Benchmarking {variant.title} {variant.precision.upper()} ({nas.path.name}) ...")
    row = Row(variant)
    images = benchmark_images(args.batch)
    load_before = _load()
    peak = matmul_peak(device)
    imgsz: tuple[int, ...] = requested
    flops = 0
    try:
        engine = nas.make_engine(settings, str(runtime))
        imgsz = engine.backend.fixed_input or requested
        flops = variant_flops(meta.model, len(meta.names), *imgsz) or 0
        _fill(row, Opened(engine, nas.path, _size_mb(nas.path)), args, images, None, flops, peak)
    except YoloNasError:  # a missing runtime or a usage error: the one-line error of the CLI
        raise
    except Exception as exc:  # a runtime failure: reported in the row, as for the other rows
        row.status = f"failed: {_one_line(exc)}"
    report = BenchmarkReport(
        [row], peak, flops, _settings(args, device, imgsz, [meta.format]), _environment(device, load_before)
    )
    report.summary = summarize(report)
    report.summary["note"] = (
        f"{nas.path.name} is an exported model, timed as it is: no baseline, speed-up or "
        "agreement (benchmark the .pt file for those)"
    )
    return report


def _workspace(args: BenchmarkArgs) -> Path:
    return (Path(args.project) if args.project else Path("runs") / "benchmark") / "exports"


def _reference(ctx: Context, images: Sequence[np.ndarray]) -> Reference:
    engine = ctx.nas.make_engine(ctx.settings, str(ctx.device), half=False)
    ref = make_reference(engine, images)
    if ctx.args.data:
        console.info(f"Measuring the reference mAP50-95 on {ctx.args.data}")
        ref = Reference(ref.boxes, ref.scores, ref.top, ref.detections, dataset_map(engine, ctx.args.data, 1))
    return ref


def _speedups(rows: list[Row]) -> None:
    base = next((r for r in rows if r.variant.baseline and r.ok and r.e2e), None)
    if base is None or base.e2e is None:
        return
    for row in rows:
        if row.ok and row.e2e:
            row.speedup = base.e2e.median / row.e2e.median


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _settings(
    args: BenchmarkArgs, device: torch.device, imgsz: tuple[int, ...], formats: Sequence[str]
) -> dict[str, Any]:
    return {
        "model": args.model,
        "imgsz": list(imgsz),
        "batch": args.batch,
        "device": str(device),
        "formats": list(formats),
        "runs": args.runs,
        "warmup": args.warmup,
        "half": args.half,
        "int8": args.int8,
        "data": args.data,
        "photo": f"{PHOTO.name} resized to {PHOTO_HW[1]}x{PHOTO_HW[0]}",
    }


def _environment(device: torch.device, load_before: list[float] | None) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("torch", "numpy", "opencv-python", "onnxruntime", "openvino", "tensorrt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    env = {
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": versions,
        "load_before": load_before,
        "load_after": _load(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summarize(report: BenchmarkReport) -> dict[str, Any]:
    """The headline numbers: baseline, fastest FP32 row, fastest row, best FP32 model GFLOP/s vs the peak."""
    ok = [r for r in report.rows if r.ok and r.e2e and not r.variant.baseline]
    base = next((r for r in report.rows if r.variant.baseline and r.ok), None)
    fp32 = [r for r in ok if r.variant.precision == "fp32"]
    summary: dict[str, Any] = {"baseline_e2e_ms": _round(base.e2e.median) if base and base.e2e else None}
    for key, pool in (("fastest_fp32", fp32), ("fastest", ok)):
        best = min(pool, key=lambda r: r.e2e.median) if pool else None  # type: ignore[union-attr]
        summary[key] = _headline(best)
    best_model = max(fp32, key=lambda r: r.gflops or 0.0) if fp32 else None
    summary["best_fp32_model"] = _headline(best_model)
    summary["peak_gflops"] = _round(report.peak.best("fp32"), 1)
    return summary


def _headline(row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    d = row.to_dict()
    keys = (
        "title",
        "precision",
        "e2e_median_ms",
        "model_median_ms",
        "speedup",
        "gflops",
        "peak_pct",
        "preprocess_ms",
        "postprocess_ms",
        "box_diff_px",
        "map50_95",
    )
    return {k: d[k] for k in keys}


# ---------------------------------------------------------------------------------------------- output


COLUMNS = (
    "Format",
    "Precision",
    "Size MB",
    "Model ms",
    "E2E ms",
    "Pre / post ms",
    "img/s",
    "GFLOP/s",
    "Agreement",
    "Speed-up",
)
CAPTION = (
    "Model ms and E2E (end-to-end) ms: median / p90 per batch. Pre / post: median preprocess and "
    "postprocess ms. GFLOP/s: fused-model FLOPs / model time (% of the same precision's matmul peak). "
    f"Agreement with PyTorch FP32: largest box (px) and score difference over its top {TOP_K} "
    "anchors, reference detections reproduced. Speed-up: end-to-end, over the baseline."
)
_TEXT_COLUMNS = ("Format", "Precision", "Agreement")
_MIN_WIDTHS = {"Format": 9, "Agreement": 14}


def render_table(report: BenchmarkReport) -> Any:
    """The Rich table of a report (print it with `console.out`). Cells fold rather than being cut short
    when the terminal is narrow."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=report_title(report),
        title_justify="left",
        caption=CAPTION,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    for name in COLUMNS:
        table.add_column(
            name, justify="left" if name in _TEXT_COLUMNS else "right", overflow="fold", min_width=_MIN_WIDTHS.get(name)
        )
    for row in report.rows:
        table.add_row(*table_cells(row))
    return table


def report_title(report: BenchmarkReport) -> str:
    s = report.settings
    return (
        f"{Path(str(s['model'])).name} at {'x'.join(map(str, s['imgsz']))}, batch {s['batch']}, "
        f"{s['device']}, {s['runs']} runs"
    )


def markdown_table(report: BenchmarkReport) -> str:
    """The same table in Markdown (saved as benchmark.md, for READMEs and reports)."""
    lines = [
        f"**{report_title(report)}**",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c in _TEXT_COLUMNS else "---:" for c in COLUMNS) + "|",
    ]
    for row in report.rows:
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in table_cells(row)) + " |")
    return "\n".join([*lines, "", CAPTION, "", *summary_lines(report), ""])


def table_cells(row: Row) -> list[str]:
    """The ten printed cells of a row (a row that was not measured shows its status instead)."""
    v = row.variant
    head = [v.title, v.precision.upper(), _fmt(row.size_mb, 1)]
    if not row.ok or row.model is None or row.e2e is None:
        return [*head, "-", "-", "-", "-", "-", row.status, "-"]
    pct = f" ({row.peak_pct:.0f}%)" if row.peak_pct is not None else ""
    pre_post = f"{row.stages['preprocess']:.1f} / {row.stages['postprocess']:.1f}"
    return [
        *head,
        f"{row.model.median:.1f} / {row.model.p90:.1f}",
        f"{row.e2e.median:.1f} / {row.e2e.p90:.1f}",
        pre_post,
        _fmt(row.images_per_s, 1),
        f"{_fmt(row.gflops, 0)}{pct}",
        agreement_text(row.agreement),
        f"{row.speedup:.2f}x" if row.speedup else "-",
    ]


def agreement_text(a: dict[str, Any]) -> str:
    """e.g. 'box 0.0004 px, score 1e-06, dets 3/3' (and 'mAP50-95 0.512 (-0.003)' with data=)."""
    parts = []
    if "box_diff_px" in a:
        parts.append(f"box {a['box_diff_px']:.2g} px, score {a['score_diff']:.1g}")
    if "matched" in a:
        parts.append(f"dets {a['matched']}/{a['reference']}")
    if "map50_95" in a:
        diff = a.get("map50_95_diff")
        parts.append(f"mAP50-95 {a['map50_95']:.3f}" + (f" ({diff:+.3f})" if diff is not None else ""))
    return ", ".join(parts) or "-"


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_lines(report: BenchmarkReport) -> list[str]:
    """Plain-text headline lines printed under the table."""
    s, env = report.summary, report.environment
    lines = [s["note"]] if s.get("note") else []
    if s.get("baseline_e2e_ms") is not None:
        lines.append(
            f"Baseline (unfused eager PyTorch, original-style pipeline): {s['baseline_e2e_ms']:.1f} ms end-to-end"
        )
    for key, label in (("fastest_fp32", "Fastest FP32"), ("fastest", "Fastest overall")):
        h = s.get(key)
        if h:
            speed = f", {h['speedup']:.2f}x the baseline" if h["speedup"] else ""
            lines.append(
                f"{label}: {h['title']} {h['precision'].upper()} {h['e2e_median_ms']:.1f} ms end-to-end{speed}"
            )
    peak_methods = ", ".join(f"{k} {v:.0f}" for k, v in report.peak.methods.items())
    model = f"{report.flops / 1e9:.3g} GFLOP/image" if report.flops else "FLOPs unknown (not an S, M or L model)"
    lines.append(f"Matrix-multiply peak: {peak_methods} GFLOP/s; model: {model}")
    cpu = f"{env['cpu']}, {env['torch_threads']} threads" + (f", GPU {env['gpu']}" if "gpu" in env else "")
    lines.append(f"Machine: {cpu}; load average {env['load_before']} before, {env['load_after']} after")
    return lines


def save_report(report: BenchmarkReport, run_dir: Path) -> list[Path]:
    """benchmark.csv (a line per row), benchmark.json (everything), benchmark.md (the table) in `run_dir`."""
    from yolonas_cli.core.files import atomic_write_bytes

    records = [r.to_dict() for r in report.rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(records[0]) if records else ["format"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    payload = json.dumps(report.to_dict(), indent=2).encode("utf-8")
    return [
        atomic_write_bytes(run_dir / "benchmark.csv", text.getvalue().encode("utf-8")),
        atomic_write_bytes(run_dir / "benchmark.json", payload),
        atomic_write_bytes(run_dir / "benchmark.md", markdown_table(report).encode("utf-8")),
    ]
