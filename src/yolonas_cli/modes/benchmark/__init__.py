"""`yolo-nas benchmark`: every backend timed the same way, on the same photo, against the original's way.

    from yolonas_cli.modes.benchmark import run_benchmark
    from yolonas_cli.modes.benchmark.report import render_table, save_report
    report = run_benchmark(make_args("benchmark", model="yolo_nas_s.pt", formats=["pytorch", "onnx"]))

The run is told here; its pieces are `records` (what is recorded), `rows` (which rows, and how each is
opened), `original` (the original-style rows and their process), `measure` (timing, agreement, mAP, the machine) and
`report` (tables and files).

What a row measures: passes through the whole pipeline, preprocess (letterbox of the decoded photo) +
inference (the backend on the ready input, synchronised) + postprocess (NMS, boxes mapped back to the photo),
each stage timed by the engine's own clock. Decoding from disk is excluded: the photo is decoded once, before
timing. Every row is opened (exported when needed) and compared first; then all rows are timed together:
`warmup` untimed passes each, then `runs` rounds in which every row makes one timed pass in turn (garbage
collection paused), so that load from outside the benchmark falls on every row alike and the ratios between
rows hold. With `busy=N`, N spinning processes run beside every other round (`busy.Spinners`), and each row
gets a second set of `runs` passes: its busy/quiet ratio is measured on the same machine at the same time.

- end-to-end: whole passes, median and 90th percentile (ms per batch); images/s is `batch / median`;
- model: the inference stage of the same passes, so that no row can show a model time above its end-to-end
  time (each pass's total contains its inference);
- stages: those of the median pass, which add up to the end-to-end median.

Achieved GFLOP/s is `FLOPs of the fused model (2 x MACs of every convolution) x batch / median model
time`, the same useful work for every row (the unfused baseline executes more, and is credited the same).

The photo is the bundled `rocket.jpg` resized to 1280x720 (a 720p photo), repeated `batch` times.

Rows:

- the baseline: the unfused model in eval mode run eagerly (`torch.no_grad`), with the original's kind of
  preprocessing (OpenCV resize and centre pad, RGB, `float64 / 255` cast to float32, CHW) and the same
  postprocessing as every other row, timed in a process of its own with the libraries' default threading,
  as the original runs (`original`); speed-ups are over this row;
- SG >= 3.5 predict: the same, on the partially fused model SuperGradients 3.5 and later predict with;
- PyTorch: the fused model through the shared engine (what `yolo-nas predict backend=torch` runs);
- Predict default (backend=auto), on a CPU with OpenVINO or ONNX Runtime installed: the weights converted
  once into the weights cache and run by that runtime (what `yolo-nas predict` runs; `formats.auto`);
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
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from functools import partial
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
from yolonas_cli.formats.auto import runtime_for
from yolonas_cli.formats.registry import BY_NAME
from yolonas_cli.model.profile import count_flops, variant_flops
from yolonas_cli.modes.benchmark.busy import Spinners
from yolonas_cli.modes.benchmark.measure import (
    PEAK_SIZE,
    Reference,
    benchmark_images,
    compare_row,
    dataset_map,
    environment,
    load_average,
    make_reference,
    matmul_peak,
    measure_map,
    one_line,
    record_timing,
    time_rows,
    timed_run,
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
    with ExitStack() as resources:
        ctx = Context(args, model, unfused, device, settings, _workspace(args), resources=resources)
        return _measure(ctx, imgsz)


def _measure(ctx: Context, imgsz: tuple[int, int]) -> BenchmarkReport:
    """The run on an opened context: plan, open and compare, time, mAP, summary."""
    args, model, device = ctx.args, ctx.model, ctx.device
    formats = args.formats if args.formats is not None else available_formats(device)
    auto = runtime_for("auto", device) is not None  # a runtime faster than PyTorch is installed
    variants = plan_variants(formats, device, args.half, args.int8, auto=auto)
    images = benchmark_images(args.batch)
    load_before = load_average()
    ref = _reference(ctx, images)
    flops = count_flops(model.model, *imgsz)
    opened = [open_row(ctx, variant, images, ref) for variant in variants]
    rows = [row for row, _ in opened]
    peak = _peak(device, int8=any(v.precision == "int8" for v in variants))
    time_opened(opened, args, images, flops, peak)
    ctx.resources.close()  # the original-style rows' processes: timing was all they were for
    if args.data:
        measure_maps(opened, args.data, ref)
    _speedups(rows)
    report = BenchmarkReport(
        rows, peak, flops, _settings(args, device, imgsz, formats), environment(device, load_before)
    )
    report.summary = summarize(report)
    return report


def open_row(ctx: Context, variant: Variant, images: Sequence[np.ndarray], ref: Reference) -> tuple[Row, Opened | None]:
    """Open (exporting first when needed) and compare one variant: (row, what was opened or None); any failure
    becomes the row's status."""
    console.info(f"Opening {variant.title} {variant.precision.upper()} ...")
    row = Row(variant)
    try:
        opened = open_variant(ctx, variant)
    except (Unavailable, MissingExtraError) as exc:
        row.status = f"not available: {exc}"
        return row, None
    except Exception as exc:  # an exporter or runtime failure must not end the whole benchmark
        row.status = f"failed: {one_line(exc)}"
        return row, None
    _guarded(row, lambda: compare_row(row, opened, images, ref))
    return row, opened


def measure_maps(opened: Sequence[tuple[Row, Opened | None]], data: str, ref: Reference | None) -> None:
    """mAP50-95 on `data` of every row that was measured (in this process: threading changes no result)."""
    for row, done in opened:
        if row.ok and done is not None:
            engine = done.engine
            console.info(f"Measuring the mAP50-95 of {row.variant.title} {row.variant.precision.upper()} on {data}")
            _guarded(row, lambda: measure_map(row, engine, data, ref))  # noqa: B023 (called at once)


def time_opened(
    opened: Sequence[tuple[Row, Opened | None]],
    args: BenchmarkArgs,
    images: Sequence[np.ndarray],
    flops: int,
    peak: Peak,
) -> None:
    """Time the rows that opened, all together (see `measure.time_rows`), beside `args.busy` busy processes
    in every other round."""
    timed = [(row, done) for row, done in opened if row.ok and done is not None]
    rounds = f"{args.runs} rounds" + (f" quiet and {args.runs} beside {args.busy} busy processes" if args.busy else "")
    console.info(f"Timing {len(timed)} rows in turn, {rounds} ...")
    with Spinners(args.busy) if args.busy else nullcontext() as spinners:
        passes = [done.timed_pass or partial(timed_run, done.engine, images) for _, done in timed]
        timings = time_rows(passes, args.runs, args.warmup, spinners)
    for (row, _), timing in zip(timed, timings):
        if isinstance(timing, Exception):  # a runtime failing while timed: that row's status
            row.status = f"failed: {one_line(timing)}"
            continue
        record_timing(row, *timing, len(images), flops, peak)


def _guarded(row: Row, work: Callable[[], None]) -> None:
    """Run `work` for `row`; a failure becomes the row's status instead of ending the benchmark."""
    try:
        work()
    except YoloNasError:
        raise
    except Exception as exc:
        row.status = f"failed: {one_line(exc)}"


def _peak(device: torch.device, int8: bool = False) -> Peak:
    what = "float32 GEMM" + (" and INT8" if int8 else "")
    console.info(f"Measuring the matrix-multiply peak ({PEAK_SIZE}^3 {what}, {torch.get_num_threads()} threads)")
    return matmul_peak(device, int8=int8)


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
    peak = _peak(device, int8=meta.precision == "int8")
    imgsz: tuple[int, ...] = requested
    flops = 0
    try:
        opened = Opened(model.make_engine(settings, str(runtime)), model.path, size_mb(model.path))
        imgsz = opened.engine.backend.fixed_input or requested
        flops = variant_flops(meta.model, len(meta.names), *imgsz) or 0
        compare_row(row, opened, images, None)
    except YoloNasError:  # a missing runtime or a usage error: the one-line error of the CLI
        raise
    except Exception as exc:  # a runtime failure: reported in the row, as for the other rows
        row.status = f"failed: {one_line(exc)}"
    if row.ok:
        time_opened([(row, opened)], args, images, flops, peak)
    if row.ok and args.data:
        measure_maps([(row, opened)], args.data, None)
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
        "busy": args.busy,
        "data": args.data,
        "photo": f"{PHOTO.name} resized to {PHOTO_HW[1]}x{PHOTO_HW[0]}",
    }
