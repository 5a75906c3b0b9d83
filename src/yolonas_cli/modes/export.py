"""`yolo-nas export`: export arguments checked against the format's record, then the format's own export.

    from yolonas_cli.modes.export import export_model
    path = export_model(Detector("yolo_nas_s.pt"), ExportArgs(format="onnx", dynamic=True, nms=True))

Validation reads only the format's record (`formats.registry`): an argument set to a non-default value on a
format that does not take it is a one-line `UsageError` (exit code 2), and a missing package a one-line
`MissingExtraError`, both before the weights are loaded. The work itself is done by the format's module.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import torch

from yolonas_cli.cfg import ExportArgs
from yolonas_cli.core import console
from yolonas_cli.core.checks import format_value
from yolonas_cli.core.devices import select_device
from yolonas_cli.core.errors import MissingExtraError, UsageError, YoloNasError
from yolonas_cli.core.files import size_mb
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.core.version import __version__
from yolonas_cli.detector import Detector
from yolonas_cli.engine.postprocess import PRE_NMS_TOP_K
from yolonas_cli.formats.base import Format
from yolonas_cli.formats.job import OPTIONAL_ARGS, ExportJob, ExportOptions
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.registry import get
from yolonas_cli.weights.download import sha256_file

__all__ = ["OPTIONAL_ARGS", "check_args", "export_job", "export_model", "run"]


def run(args: ExportArgs) -> int:
    """`yolo-nas export`: the arguments and the installed packages are checked before the weights are loaded
    or downloaded; 0 on success."""
    fmt = get(args.format)
    check_args(args, fmt)
    fmt.check_installed(args.int8)
    export_model(Detector(args.model, weights_dir=args.weights_dir), args)
    return 0


def export_model(model: Detector, args: ExportArgs, *, hints: bool = True) -> Path:
    """Export `model` as `args` says; returns the path of the exported file or folder (beside the weights).

    The console follows `args.verbose` for the duration of the call. `hints`: end with the `Predict:` and
    `Validate:` commands for the file (a command that exports several files, like the benchmark, passes
    False)."""
    with console.verbosity(args.verbose):
        path = _export(model, args)
        if hints:
            _print_next_steps(args, path)
    return path


def _export(model: Detector, args: ExportArgs) -> Path:
    fmt = get(args.format)
    check_args(args, fmt)
    fmt.check_installed(args.int8)
    job = export_job(model, args, export_device(args, fmt))
    started = time.perf_counter()
    _print_start(job, fmt)
    try:
        path = fmt.export(job)
    except YoloNasError:
        raise
    except Exception as exc:  # a failure inside torch/onnx/openvino/tensorrt: one line, chained for debugging
        raise YoloNasError(
            f"{fmt.title} export failed after {time.perf_counter() - started:.1f}s: {type(exc).__name__}: {exc}"
        ) from exc
    console.info(f"{fmt.title}: exported in {time.perf_counter() - started:.1f}s to '{path}' ({size_mb(path):.1f} MB)")
    return path


def export_job(model: Detector, args: ExportArgs, device: torch.device, output: Path | None = None) -> ExportJob:
    """What the format's export is given: the fused model, the options, the metadata, where the file goes."""
    fmt = get(args.format)
    imgsz = imgsz_pair(args.imgsz)
    model.fuse()
    options = ExportOptions(**{name: getattr(args, name) for name in OPTIONAL_ARGS})
    meta = export_metadata(model, args, imgsz)
    output = output or fmt.output_for(model.path)
    return ExportJob(model.loaded.model, model.path, options, meta, output, device, imgsz)


# ---------------------------------------------------------------- validation


def check_args(args: ExportArgs, fmt: Format) -> None:
    """UsageError for an argument the format does not take, or a combination that cannot work."""
    default = {f.name: f.default for f in fields(ExportArgs)}
    for name in OPTIONAL_ARGS:
        value = getattr(args, name)
        if value != default[name] and name not in fmt.takes:
            takes = ", ".join(a for a in OPTIONAL_ARGS if a in fmt.takes) or "none"
            raise UsageError(f"{name}={format_value(value)} is not supported for format={fmt.name} (it takes: {takes})")
    _check_combinations(args, default)


def _check_combinations(args: ExportArgs, default: dict) -> None:
    if args.half and args.int8:
        raise UsageError("half=True and int8=True together: choose one")
    for name in ("conf", "iou", "max_det"):
        if getattr(args, name) != default[name] and not args.nms:
            raise UsageError(
                f"{name}={format_value(getattr(args, name))} only applies to the NMS in the exported "
                "model: add nms=True"
            )
    for name in ("data", "fraction"):
        if getattr(args, name) != default[name] and not args.int8:
            raise UsageError(
                f"{name}={format_value(getattr(args, name))} only applies to INT8 calibration: add int8=True"
            )


def export_device(args: ExportArgs, fmt: Format) -> torch.device:
    """The device the model is traced on: the CPU unless a GPU is asked for; CUDA for TensorRT."""
    if not fmt.needs_cuda:
        return torch.device("cpu") if args.device == "auto" else select_device(args.device)
    if args.device in ("cpu", "mps"):
        raise UsageError(
            f"format={fmt.name} builds a TensorRT engine, which needs an NVIDIA GPU: "
            "use device=0 (or leave device=auto)"
        )
    if not torch.cuda.is_available():
        raise MissingExtraError(
            f"format={fmt.name} needs CUDA, and torch sees no CUDA GPU here "
            "(install a CUDA build of torch on a machine with an NVIDIA GPU)"
        )
    return select_device("cuda:0" if args.device == "auto" else args.device)


# ---------------------------------------------------------------- metadata and messages


def export_metadata(model: Detector, args: ExportArgs, imgsz: tuple[int, int]) -> ExportMetadata:
    """The metadata record of this export."""
    precision = "int8" if args.int8 else "fp16" if args.half else "fp32"
    return ExportMetadata(
        names=dict(model.names),
        imgsz=imgsz,
        batch=args.batch,
        dynamic=args.dynamic,
        precision=precision,
        nms=args.nms,
        model=model.loaded.variant or model.path.stem,
        source=model.path.name,
        source_sha256=sha256_file(model.path),
        format=args.format,
        version=__version__,
        conf=args.conf if args.nms else None,
        iou=args.iou if args.nms else None,
        max_det=args.max_det if args.nms else None,
        pre_nms_top_k=PRE_NMS_TOP_K if args.nms else None,
    )


def _print_start(job: ExportJob, fmt: Format) -> None:
    o = job.options
    shape = (o.batch, 3, *job.imgsz)
    kind = "detections (num_dets, det_boxes, det_scores, det_classes)" if o.nms else "boxes and scores"
    console.info(
        f"Exporting '{job.weights}' ({size_mb(job.weights):.1f} MB) to {fmt.title}: input "
        f"{shape} BCHW{' (dynamic)' if o.dynamic else ''}, {job.meta.precision}, outputs {kind}"
    )


def _print_next_steps(args: ExportArgs, path: Path) -> None:
    size = format_value(args.imgsz)
    console.info(f"Results saved to {path.parent.resolve()}")
    console.info(f"Predict:  yolo-nas predict model={path} imgsz={size}")
    console.info(f"Validate: yolo-nas val model={path} imgsz={size} data=coco8.yaml")
