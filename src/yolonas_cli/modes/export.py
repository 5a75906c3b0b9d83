"""`yolo-nas export`: the table of formats, argument validation against it, and the export entry point.

    from yolonas_cli.modes.export import export_model
    path = export_model(NAS("yolo_nas_s.pt"), ExportArgs(format="onnx", dynamic=True, nms=True))

Each format is one row of `FORMATS` (frozen dataclasses): where the file goes, which export arguments it
takes, what must be installed, whether it needs a GPU. Validation reads only the table: an argument set
to a non-default value on a format that does not list it is a one-line `UsageError` (exit code 2). The
work itself is done by one module per format in `yolonas_cli.formats`, imported when used.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

import torch
from torch import nn

from yolonas_cli.cfg import ExportArgs, format_value
from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError, YoloNasError
from yolonas_cli.core.files import size_mb
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.formats.metadata import ExportMetadata

if TYPE_CHECKING:
    from yolonas_cli.api import NAS
    from yolonas_cli.model.yolo_nas import YoloNAS

#: Export arguments a format may or may not take (model, weights_dir, verbose, device, imgsz, format: all).
OPTIONAL_ARGS = (
    "batch",
    "dynamic",
    "half",
    "int8",
    "nms",
    "simplify",
    "opset",
    "data",
    "fraction",
    "conf",
    "iou",
    "max_det",
)
_NMS_ARGS = frozenset({"nms", "conf", "iou", "max_det"})
_INT8_ARGS = frozenset({"int8", "data", "fraction"})
_ONNX_ARGS = frozenset({"simplify", "opset"})
PRE_NMS_TOP_K = 1024  # the original's predict value (postprocess.py), also inside exported NMS graphs


@dataclass(frozen=True)
class FormatSpec:
    """One export format."""

    name: str  # the `format=` value
    title: str  # as printed: "ONNX", "TorchScript", ...
    suffix: str  # ".onnx" (a file) or "_openvino_model" (a folder, when `folder`)
    args: frozenset[str]  # which of OPTIONAL_ARGS it takes
    requires: tuple[tuple[str, str], ...]  # (module, extra) that must be importable
    module: str  # yolonas_cli.formats.<module>.export(job) does the work
    folder: bool = False  # the output is a folder
    needs_cuda: bool = False  # only on an NVIDIA GPU

    def output_for(self, weights: Path) -> Path:
        """Where the export of `weights` goes: beside it, named after its stem."""
        if self.folder:
            return weights.parent / f"{weights.stem}{self.suffix}"
        return weights.with_suffix(self.suffix)


FORMATS: dict[str, FormatSpec] = {
    "onnx": FormatSpec(
        "onnx",
        "ONNX",
        ".onnx",
        frozenset({"batch", "dynamic", "half"}) | _INT8_ARGS | _NMS_ARGS | _ONNX_ARGS,
        (("onnx", "onnx"),),
        "onnx_graph",
    ),
    "torchscript": FormatSpec(
        "torchscript", "TorchScript", ".torchscript", frozenset({"batch", "dynamic", "half"}), (), "torchscript_export"
    ),
    "openvino": FormatSpec(
        "openvino",
        "OpenVINO",
        "_openvino_model",
        frozenset({"batch", "dynamic", "half", "opset"}) | _INT8_ARGS | _NMS_ARGS,
        (("openvino", "openvino"), ("onnx", "openvino")),
        "openvino_export",
        folder=True,
    ),
    "engine": FormatSpec(
        "engine",
        "TensorRT",
        ".engine",
        frozenset({"batch", "dynamic", "half"}) | _INT8_ARGS | _NMS_ARGS | _ONNX_ARGS,
        (("tensorrt", "tensorrt"), ("onnx", "tensorrt")),
        "tensorrt_export",
        needs_cuda=True,
    ),
}


@dataclass
class ExportJob:
    """Everything a format module needs."""

    nas: NAS
    args: ExportArgs
    spec: FormatSpec
    meta: ExportMetadata
    output: Path
    device: torch.device
    imgsz: tuple[int, int]

    def sample(self) -> torch.Tensor:
        """The tracing input: [batch, 3, H, W] float32 grey (0.5) on the export device."""
        return torch.full((self.args.batch, 3, *self.imgsz), 0.5, device=self.device)

    def module(self, half: bool | None = None, nms: bool | None = None) -> nn.Module:
        """A fresh copy of the fused model wrapped for export (FP16 body when `half`, NMS head when `nms`)."""
        from yolonas_cli.formats.wrappers import DecodedModel, End2EndHead, End2EndModel

        half = self.args.half if half is None else half
        nms = self.args.nms if nms is None else nms
        body = cast("YoloNAS", copy.deepcopy(self.nas.model).eval().float().to(self.device))
        decoded = DecodedModel(body, half=half)
        if not nms:
            return decoded.eval()
        head = End2EndHead(self.args.conf, self.args.iou, self.args.max_det, PRE_NMS_TOP_K)
        return End2EndModel(decoded, head).eval()


# ---------------------------------------------------------------- validation


def check_args(args: ExportArgs, spec: FormatSpec) -> None:
    """UsageError for an argument the format does not take, or a combination that cannot work."""
    default = {f.name: f.default for f in fields(ExportArgs)}
    for name in OPTIONAL_ARGS:
        value = getattr(args, name)
        if value != default[name] and name not in spec.args:
            takes = ", ".join(a for a in OPTIONAL_ARGS if a in spec.args) or "none"
            raise UsageError(
                f"{name}={format_value(value)} is not supported for format={spec.name} (it takes: {takes})"
            )
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


def check_installed(spec: FormatSpec, args: ExportArgs) -> None:
    """MissingExtraError naming the first missing package (checked before any work is done)."""
    import importlib.util

    needs = list(spec.requires)
    if args.int8 and spec.name in ("onnx", "engine"):  # ONNX Runtime's quantizer makes the QDQ graph
        needs.append(("onnxruntime", "onnx"))
    if args.int8 and spec.name == "openvino":
        needs.append(("nncf", "openvino"))
    for module, extra in needs:
        if importlib.util.find_spec(module) is None:
            hint = "pip install nncf" if module == "nncf" else f"pip install 'yolo-nas[{extra}]'"
            raise MissingExtraError(
                f"format={spec.name}{' int8=True' if args.int8 else ''} needs {module}, which is not installed: {hint}"
            )
    if spec.name == "engine":
        from yolonas_cli.formats.tensorrt import load_tensorrt

        load_tensorrt()  # TensorRT 10 or newer


def export_device(args: ExportArgs, spec: FormatSpec) -> torch.device:
    """The device the model is traced on: the CPU unless a GPU is asked for; CUDA for TensorRT."""
    from yolonas_cli.core.devices import select_device

    if not spec.needs_cuda:
        return torch.device("cpu") if args.device == "auto" else select_device(args.device)
    if args.device in ("cpu", "mps"):
        raise UsageError(
            f"format={spec.name} builds a TensorRT engine, which needs an NVIDIA GPU: "
            "use device=0 (or leave device=auto)"
        )
    if not torch.cuda.is_available():
        raise MissingExtraError(
            f"format={spec.name} needs CUDA, and torch sees no CUDA GPU here "
            "(install a CUDA build of torch on a machine with an NVIDIA GPU)"
        )
    return select_device("cuda:0" if args.device == "auto" else args.device)


# ---------------------------------------------------------------- export


def export_metadata(nas: NAS, args: ExportArgs, imgsz: tuple[int, int]) -> ExportMetadata:
    """The metadata record of this export."""
    from yolonas_cli.core.version import __version__
    from yolonas_cli.weights.download import sha256_file

    precision = "int8" if args.int8 else "fp16" if args.half else "fp32"
    return ExportMetadata(
        names=dict(nas.names),
        imgsz=imgsz,
        batch=args.batch,
        dynamic=args.dynamic,
        precision=precision,
        nms=args.nms,
        model=nas.loaded.variant or nas.path.stem,
        source=nas.path.name,
        source_sha256=sha256_file(nas.path),
        format=args.format,
        version=__version__,
        conf=args.conf if args.nms else None,
        iou=args.iou if args.nms else None,
        max_det=args.max_det if args.nms else None,
        pre_nms_top_k=PRE_NMS_TOP_K if args.nms else None,
    )


def export_model(nas: NAS, args: ExportArgs) -> Path:
    """Export `nas` as `args` says; returns the path of the exported file or folder (beside the weights)."""
    import importlib

    spec = FORMATS[args.format]
    check_args(args, spec)
    check_installed(spec, args)
    device = export_device(args, spec)
    imgsz = imgsz_pair(args.imgsz)
    nas.fuse()
    job = ExportJob(nas, args, spec, export_metadata(nas, args, imgsz), spec.output_for(nas.path), device, imgsz)
    started = time.perf_counter()
    _print_start(job)
    run: Callable[[ExportJob], Path] = importlib.import_module(f"yolonas_cli.formats.{spec.module}").export
    try:
        path = run(job)
    except YoloNasError:
        raise
    except Exception as exc:  # a failure inside torch/onnx/openvino/tensorrt: one line, chained for debugging
        raise YoloNasError(
            f"{spec.title} export failed after {time.perf_counter() - started:.1f}s: {type(exc).__name__}: {exc}"
        ) from exc
    console.info(f"{spec.title}: exported in {time.perf_counter() - started:.1f}s to '{path}' ({size_mb(path):.1f} MB)")
    _print_next_steps(job, path)
    return path


def _print_start(job: ExportJob) -> None:
    shape = (job.args.batch, 3, *job.imgsz)
    kind = "detections (num_dets, det_boxes, det_scores, det_classes)" if job.args.nms else "boxes and scores"
    console.info(
        f"Exporting '{job.nas.path}' ({size_mb(job.nas.path):.1f} MB) to {job.spec.title}: input "
        f"{shape} BCHW{' (dynamic)' if job.args.dynamic else ''}, {job.meta.precision}, outputs {kind}"
    )


def _print_next_steps(job: ExportJob, path: Path) -> None:
    size = format_value(job.args.imgsz)
    console.info(f"Results saved to {path.parent.resolve()}")
    console.info(f"Predict:  yolo-nas predict model={path} imgsz={size}")
    console.info(f"Validate: yolo-nas val model={path} imgsz={size} data=coco8.yaml")


def run(args: ExportArgs) -> int:
    """`yolo-nas export`: the arguments and the installed packages are checked before the weights are loaded
    or downloaded; 0 on success."""
    from yolonas_cli.api import NAS

    check_args(args, FORMATS[args.format])
    check_installed(FORMATS[args.format], args)
    export_model(NAS(args.model, weights_dir=args.weights_dir), args)
    return 0
