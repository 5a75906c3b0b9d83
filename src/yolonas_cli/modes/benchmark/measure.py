"""Measuring the rows: the timed photo, the passes through the whole pipeline (every row in turn, round after
round; quiet and busy rounds alternating with `busy=`), the machine's matrix-multiply peak, agreement with the
fused PyTorch FP32 reference, and mAP with `data=`."""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from yolonas_cli.core.devices import cpu_name
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.data.datasets.dataset import load_dataset
from yolonas_cli.engine.engine import STAGES, Engine, EngineSettings
from yolonas_cli.metrics.evaluate import evaluate
from yolonas_cli.metrics.matching import count_matched
from yolonas_cli.modes.benchmark.busy import Spinners
from yolonas_cli.modes.benchmark.records import PHOTO, PHOTO_HW, Opened, Peak, Row, Stats

TOP_K = 100  # anchors compared for the box/score agreement
MATCH_IOU = 0.5
PEAK_SIZE = 2048
PEAK_RUNS = 5
MAP_CONF = 0.001


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


def matmul_peak(device: torch.device, size: int = PEAK_SIZE, runs: int = PEAK_RUNS, int8: bool = False) -> Peak:
    """GFLOP/s of a size^3 GEMM: torch.mm (and oneDNN as a 1x1 convolution on a CPU; FP16 too on a GPU); with
    `int8` on a CPU with OpenVINO installed, the INT8 GEMM too (giga-operations/s, `_openvino_int8_gemm_ms`)."""
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
        if device.type == "cpu" and int8 and (samples := _openvino_int8_gemm_ms(size, runs)):
            methods["OpenVINO int8"] = _gflops(flop, samples)
    return Peak(methods, size, torch.get_num_threads())


def _mm(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: torch.mm(a, b)


def _onednn_gemm_ms(size: int, runs: int) -> list[float]:
    """The same GEMM as a channels-last 1x1 convolution (size pixels, size channels and filters): oneDNN."""
    x = torch.randn(1, size, size // 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(size, size, 1, 1).contiguous(memory_format=torch.channels_last)
    return _time_ms(lambda: torch.nn.functional.conv2d(x, w), runs, 2)


def _openvino_int8_gemm_ms(size: int, runs: int) -> list[float] | None:
    """Times of `int8_gemm_model` compiled as the INT8 rows are (`formats.openvino.compile_config`); None
    without OpenVINO."""
    try:
        import openvino as ov
    except ImportError:
        return None
    from yolonas_cli.formats.openvino import compile_config

    model, a = int8_gemm_model(size)
    compiled = ov.Core().compile_model(model, "CPU", compile_config())
    return _time_ms(lambda: compiled([a]), runs, 2)


def int8_gemm_model(size: int) -> tuple[Any, np.ndarray]:
    """(OpenVINO model, its input): a size x size MatMul whose operands pass FakeQuantize (activations 0..1 in
    256 levels, weights -1..1 in 255), which OpenVINO's CPU plugin runs as an INT8 oneDNN GEMM (VNNI where
    the CPU has it)."""
    import openvino as ov
    import openvino.opset13 as ops

    def quantized(node: Any, low: float, high: float, levels: int) -> Any:
        low_c, high_c = (ops.constant(np.array(v, dtype=np.float32)) for v in (low, high))
        return ops.fake_quantize(node, low_c, high_c, low_c, high_c, levels)

    rng = np.random.default_rng(0)
    x = ops.parameter([size, size], np.float32)
    w = ops.constant(rng.uniform(-1, 1, (size, size)).astype(np.float32))
    product = ops.matmul(quantized(x, 0.0, 1.0, 256), quantized(w, -1.0, 1.0, 255), False, False)
    product.set_friendly_name("int8_gemm")
    return ov.Model([product], [x]), rng.uniform(0, 1, (size, size)).astype(np.float32)


def _gflops(flop: float, samples_ms: Sequence[float]) -> float:
    return flop / (float(np.median(samples_ms)) * 1e-3) / 1e9


def benchmark_images(batch: int) -> list[np.ndarray]:
    """The timed input: the bundled photo resized to 1280x720, `batch` times (decoded once, here)."""
    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    if image is None:
        raise YoloNasError(f"cannot read the bundled photo {PHOTO}")
    photo = cv2.resize(image, PHOTO_HW[::-1], interpolation=cv2.INTER_LINEAR)
    return [photo] * batch


def timed_run(engine: Engine, images: Sequence[np.ndarray]) -> dict[str, float]:
    """One end-to-end pass: ms per batch of each stage, as the engine's own clock measures it (the stages are
    contiguous, so they add up to the pass)."""
    speed = engine.run_batch(images)[0][2]  # ms per image
    return {stage: speed[stage] * len(images) for stage in STAGES}


@dataclass(frozen=True)
class Timing:
    """What a row's timed passes say: end to end, the model alone, and the stages of the median pass."""

    e2e: Stats  # preprocess + inference + postprocess of each pass
    model: Stats  # the inference stage of each pass (the backend on a ready input, synchronised)
    stages: dict[str, float]  # of the pass whose total is the median (the two middle ones averaged)


def summarize_runs(runs: Sequence[dict[str, float]]) -> Timing:
    """The `Timing` of passes from `timed_run`: the stages reported are the median pass's own, so they add up
    to the median end-to-end time, and no figure can exceed the end-to-end one it is part of."""
    totals = [sum(run.values()) for run in runs]
    order = np.argsort(totals, kind="stable")
    middle = [runs[i] for i in order[(len(runs) - 1) // 2 : len(runs) // 2 + 1]]
    stages = {stage: float(np.mean([run[stage] for run in middle])) for stage in STAGES}
    return Timing(Stats.of(totals), Stats.of([run["inference"] for run in runs]), stages)


def time_rows(
    passes: Sequence[Callable[[], dict[str, float]]],
    runs: int,
    warmup: int,
    spinners: Spinners | None = None,
) -> list[tuple[Timing, Timing | None] | Exception]:
    """Time every row in turn, round after round, so that all of them see the same machine: `warmup` untimed
    passes each, then `runs` rounds of one timed pass each (garbage collection paused). A row is given as its
    pass (`timed_run` of its engine, or an original-style row's process's). With `spinners`, every other round
    runs beside the busy processes. Per row: (quiet timing, busy timing or None), or the exception that ended
    its passes (the other rows go on)."""
    failed: dict[int, Exception] = {}
    quiet: list[list[dict[str, float]]] = [[] for _ in passes]
    busy: list[list[dict[str, float]]] = [[] for _ in passes]

    def attempt(index: int, samples: list[dict[str, float]] | None) -> None:
        if index in failed:
            return
        try:
            result = passes[index]()
        except YoloNasError:  # ours: a one-line error for the whole command
            raise
        except Exception as exc:  # a runtime failing in one row: that row's status, not the run's end
            failed[index] = exc
            return
        if samples is not None:
            samples.append(result)

    for index in range(len(passes)):
        for _ in range(warmup):
            attempt(index, None)
    with _gc_paused():
        for round_index in range(runs * (2 if spinners else 1)):
            beside = spinners is not None and round_index % 2 == 1
            with spinners.running() if spinners is not None and beside else nullcontext():
                for index, samples in enumerate(busy if beside else quiet):
                    attempt(index, samples)
    return [
        failed[i] if i in failed else (summarize_runs(quiet[i]), summarize_runs(busy[i]) if busy[i] else None)
        for i in range(len(passes))
    ]


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    matched = count_matched(ref.detections, detections, MATCH_IOU)
    result: dict[str, Any] = {"matched": matched, "reference": sum(len(r) for r in ref.detections)}
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and all(isinstance(t, torch.Tensor) for t in raw):
        boxes, scores = (t.detach().float().cpu().numpy() for t in raw)
        if boxes.shape == ref.boxes.shape and scores.shape == ref.scores.shape:
            rows = np.arange(ref.top.shape[0])[:, None]
            result["box_diff_px"] = float(np.abs(boxes[rows, ref.top] - ref.boxes[rows, ref.top]).max())
            result["score_diff"] = float(np.abs(scores[rows, ref.top] - ref.scores[rows, ref.top]).max())
    return result


def dataset_map(engine: Engine, data: str) -> float:
    """mAP50-95 (pycocotools' own stat) of `engine`'s backend and pipeline on the val split of `data`, through
    the val loop at conf MAP_CONF, one image at a time (images decoded outside any timing)."""
    s = engine.settings
    settings = EngineSettings(imgsz=s.imgsz, conf=MAP_CONF, iou=s.iou, max_det=s.max_det, batch=1)
    return evaluate(engine.with_settings(settings), load_dataset(data, "val")).metrics.coco["mAP50-95"]


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def compare_row(row: Row, opened: Opened, images: Sequence[np.ndarray], ref: Reference | None) -> None:
    """Fill in an opened row's file, size and agreement with the reference (when there is one)."""
    row.file = str(opened.file) if opened.file else None
    row.size_mb = opened.size_mb
    detections, raw = raw_outputs(opened.engine, images)
    if ref is not None:
        row.agreement = agreement(ref, detections, raw)


def record_timing(row: Row, timing: Timing, busy: Timing | None, batch: int, flops: int, peak: Peak) -> None:
    """Fill in a row's times, throughput and GFLOP/s (GFLOP/s only with known FLOPs, > 0)."""
    row.e2e, row.model, row.stages, row.busy = timing.e2e, timing.model, timing.stages, busy.e2e if busy else None
    row.images_per_s = batch / (timing.e2e.median * 1e-3)
    row.gflops = flops * batch / (timing.model.median * 1e-3) / 1e9 if flops else None
    best = peak.best(row.variant.precision)  # INT8: measured with OpenVINO installed, else no percentage
    row.peak_pct = 100.0 * row.gflops / best if best and row.gflops else None


def measure_map(row: Row, engine: Engine, data: str, ref: Reference | None) -> None:
    """mAP50-95 of a row on `data` (and its difference to the reference's)."""
    row.agreement["map50_95"] = dataset_map(engine, data)
    if ref is not None and ref.map50_95 is not None:
        row.agreement["map50_95_diff"] = row.agreement["map50_95"] - ref.map50_95


# ---------------------------------------------------------------------------------------------- the machine


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device, load_before: list[float] | None) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("torch", "numpy", "opencv-python", "onnxruntime", "openvino", "tensorrt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    env = {
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": versions,
        "load_before": load_before,
        "load_after": load_average(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
