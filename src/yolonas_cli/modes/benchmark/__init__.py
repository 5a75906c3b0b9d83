"""`yolo-nas benchmark`: every backend timed the same way, on the same photo, against the original's way.

    from yolonas_cli.modes.benchmark import run_benchmark
    from yolonas_cli.modes.benchmark.report import render_table, save_report
    report = run_benchmark(make_args("benchmark", model="yolo_nas_s.pt", formats=["pytorch", "onnx"]))

The run is told here; its pieces are `records` (what is recorded), `rows` (which rows, and how each is
opened), `measure` (timing, agreement, mAP, the machine) and `report` (tables and files).

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.cfg import BenchmarkArgs
from yolonas_cli.core import console
from yolonas_cli.core.devices import select_device
from yolonas_cli.core.errors import MissingExtraError, UsageError, YoloNasError
from yolonas_cli.core.files import size_mb
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.data.sinks import RUNS_ROOT, make_run_dir
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.formats.registry import BY_NAME
from yolonas_cli.model.profile import count_flops, variant_flops
from yolonas_cli.modes.benchmark.measure import (
    PEAK_SIZE,
    Reference,
    benchmark_images,
    dataset_map,
    environment,
    load_average,
    make_reference,
    matmul_peak,
    one_line,
    time_row,
)
from yolonas_cli.modes.benchmark.records import (
    PHOTO,
    PHOTO_HW,
    BenchmarkReport,
    Opened,
    Peak,
    Row,
    Unavailable,
    Variant,
)
from yolonas_cli.modes.benchmark.report import markdown_table, render_table, save_report, summarize, summary_lines
from yolonas_cli.modes.benchmark.rows import Context, available_formats, open_variant, plan_variants


def run(args: BenchmarkArgs) -> int:
    """`yolo-nas benchmark`: run it, print the table and the headline numbers, save benchmark.csv, .json and
    .md in the run folder (runs/detect/benchmark{N}); exit code 1 when no row could be measured, else 0.

    On a terminal the table is drawn to fit it; piped or redirected, the Markdown table is printed instead (one
    line per row, never wrapped)."""
    with console.verbosity(args.verbose):
        report = run_benchmark(args)
        if console.stdout_is_terminal():
            console.out(render_table(report))
            for line in summary_lines(report):
                console.text(line)
        else:
            console.text(markdown_table(report).rstrip("\n"))
        run_dir = make_run_dir(args.project, args.name, args.exist_ok, "benchmark", create=True)
        save_report(report, run_dir)
        console.info(f"Results saved to {run_dir}")
    return 0 if any(row.ok for row in report.rows) else 1


def run_benchmark(args: BenchmarkArgs) -> BenchmarkReport:
    """Measure every planned row (see the module docstring); prints progress, returns the report."""
    device = select_device(args.device)
    model = Detector(args.model, weights_dir=args.weights_dir)
    if model.is_exported:
        return run_exported_benchmark(args, model, device)
    unfused = copy.deepcopy(model.model).eval()
    model.fuse()
    imgsz = imgsz_pair(args.imgsz)
    settings = EngineSettings(imgsz=imgsz, batch=args.batch)
    ctx = Context(args, model, unfused, device, settings, _workspace(args))
    formats = args.formats if args.formats is not None else available_formats(device)
    variants = plan_variants(formats, device, args.half, args.int8)
    images = benchmark_images(args.batch)
    load_before = load_average()
    ref = _reference(ctx, images)
    flops = count_flops(model.model, *imgsz)
    console.info(f"Measuring the matrix-multiply peak ({PEAK_SIZE}^3 float32 GEMM, {torch.get_num_threads()} threads)")
    peak = matmul_peak(device)
    rows = []
    for variant in variants:
        console.info(f"Benchmarking {variant.title} {variant.precision.upper()} ...")
        rows.append(measure_variant(ctx, variant, images, ref, flops, peak))
    _speedups(rows)
    report = BenchmarkReport(
        rows, peak, flops, _settings(args, device, imgsz, formats), environment(device, load_before)
    )
    report.summary = summarize(report)
    return report


def measure_variant(
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
        row.status = f"failed: {one_line(exc)}"
        return row
    try:
        time_row(row, opened, ctx.args, images, ref, flops, peak)
    except Exception as exc:
        row.status = f"failed: {one_line(exc)}"
    return row


def run_exported_benchmark(args: BenchmarkArgs, model: Detector, device: torch.device) -> BenchmarkReport:
    """An exported file (`model=yolo_nas_s.onnx`, ...) timed as it is: one row, in its own format and
    precision. No baseline, speed-up or agreement (there are no weights to run the reference with: benchmark
    the .pt file to compare formats); FLOPs from the architecture its metadata names (S, M, L), else none."""
    meta = model.exported_metadata
    assert meta is not None
    if args.formats is not None:
        raise UsageError(
            f"formats= chooses the exports of a weights file; '{model.path.name}' is an exported "
            f"{BY_NAME[meta.format].runtime} model and is timed as it is: drop formats= (or "
            "benchmark the .pt file to compare formats)"
        )
    requested = imgsz_pair(args.imgsz)
    settings = EngineSettings(imgsz=requested, batch=args.batch)
    variant = Variant(meta.format, meta.precision)
    runtime = torch.device("cpu") if meta.format == "openvino" else device
    console.info(f"Benchmarking {variant.title} {variant.precision.upper()} ({model.path.name}) ...")
    row = Row(variant)
    images = benchmark_images(args.batch)
    load_before = load_average()
    peak = matmul_peak(device)
    imgsz: tuple[int, ...] = requested
    flops = 0
    try:
        engine = model.make_engine(settings, str(runtime))
        imgsz = engine.backend.fixed_input or requested
        flops = variant_flops(meta.model, len(meta.names), *imgsz) or 0
        time_row(row, Opened(engine, model.path, size_mb(model.path)), args, images, None, flops, peak)
    except YoloNasError:  # a missing runtime or a usage error: the one-line error of the CLI
        raise
    except Exception as exc:  # a runtime failure: reported in the row, as for the other rows
        row.status = f"failed: {one_line(exc)}"
    report = BenchmarkReport(
        [row], peak, flops, _settings(args, device, imgsz, [meta.format]), environment(device, load_before)
    )
    report.summary = summarize(report)
    report.summary["note"] = (
        f"{model.path.name} is an exported model, timed as it is: no baseline, speed-up or "
        "agreement (benchmark the .pt file for those)"
    )
    return report


def _workspace(args: BenchmarkArgs) -> Path:
    """Where the exports are cached: `exports/` beside the run folders (runs/detect/exports by default)."""
    return (Path(args.project) if args.project else RUNS_ROOT) / "exports"


def _reference(ctx: Context, images: Sequence[np.ndarray]) -> Reference:
    engine = ctx.model.make_engine(ctx.settings, str(ctx.device), half=False)
    ref = make_reference(engine, images)
    if ctx.args.data:
        console.info(f"Measuring the reference mAP50-95 on {ctx.args.data}")
        ref = Reference(ref.boxes, ref.scores, ref.top, ref.detections, dataset_map(engine, ctx.args.data))
    return ref


def _speedups(rows: list[Row]) -> None:
    base = next((r for r in rows if r.variant.baseline and r.ok and r.e2e), None)
    if base is None or base.e2e is None:
        return
    for row in rows:
        if row.ok and row.e2e:
            row.speedup = base.e2e.median / row.e2e.median


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
