"""Typed arguments of every mode: defaults, one-line help, validation and coercion.

Each mode has one dataclass (`PredictArgs`, `ValArgs`, `ExportArgs`, `InfoArgs`, `BenchmarkArgs`,
`ServeArgs`), all built
on `CommonArgs`. Every field carries its help line and its check in `dataclasses.field(metadata=...)`, and
`__post_init__` runs the checks, so an instance (from the CLI parser, from `make_args`, from direct
construction or from `dataclasses.replace`) always holds valid, normalised values, or construction raises
`UsageError` with one line naming the argument, the bad value and what is allowed.

Types are checked strictly (see `core.checks`):
- a bool field takes only True or False (`save=1` is an error; the CLI parser turns true/false into bools);
- an int field takes only integers (`batch=2.5` and `batch=2.0` are errors);
- a float field takes integers or floats (`conf=1` is 1.0); `conf=abc` is an error;
- a text field (model, data, name, ...) takes str or a path-like object (turned into str).
Normalisation: `device=N` → "cuda:N"; `imgsz` → int or (h, w) tuple, rounded up to a multiple of 32 with a
warning; `classes=N` → [N]; `format=trt|tensorrt` → "engine"; choices are lower-cased.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from yolonas_cli.core import console
from yolonas_cli.core.checks import (
    Check,
    bad_value,
    boolean,
    choice,
    classes,
    device,
    did_you_mean,
    format_value,
    imgsz,
    integer,
    number,
    source,
    text,
)
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.sizes import STRIDE, imgsz_pair
from yolonas_cli.formats import registry

MODES = ("predict", "val", "export", "info", "benchmark", "serve")
EXPORT_FORMATS = registry.EXPORT_FORMATS
BENCHMARK_FORMATS = tuple(f.name for f in registry.FORMATS)  # the PyTorch weights and every export
FORMAT_ALIASES = registry.ALIASES


def _backend(default: str) -> Any:
    return arg(
        default,
        "runtime of .pt weights: auto (on a CPU the fastest installed: openvino, onnxruntime, else torch; "
        "converted once and cached), torch, openvino or onnxruntime",
        choice(registry.BACKENDS, registry.BACKEND_ALIASES),
        (str,),
    )


def unknown_key_message(mode: str, key: str, where: str = "") -> str:
    """The one-line error for a key that `mode` does not take (`where` names a cfg file, if any)."""
    hint = did_you_mean(key, field_names(mode)) or f" Run 'yolo-nas {mode} --help' to list the arguments."
    return f"'{key}'{where} is not a valid argument for {mode}.{hint}"


def ray_target(name: str, value: Any) -> str | None:
    """None (this process), auto (the running cluster), local (start one here) or a cluster address
    (ray://host:port for Ray Client, host:port for the cluster's GCS)."""
    allowed = "use auto, local, or a cluster address such as ray://host:10001 (None = no Ray)"
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_value(name, value, "is not valid", allowed)
    spelled = value.strip()
    if spelled.lower() in ("auto", "local"):
        return spelled.lower()
    host, _, number = spelled.removeprefix("ray://").rpartition(":")
    if not host or not number.isdigit() or not 0 < int(number) < 65536 or any(c.isspace() for c in spelled):
        raise bad_value(name, value, "is not valid", allowed)
    return spelled


def tcp_port(name: str, value: Any) -> int:
    """A TCP port 0-65535 (0 = any free port)."""
    checked = integer(0)(name, value)
    if checked is None or checked > 65535:
        raise bad_value(name, value, "is out of range", "use a port between 0 and 65535 (0 = any free port)")
    return checked


def formats(name: str, value: Any) -> list[str] | None:
    """None (every available backend) or backend names as a list or comma-separated text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip(" '\"") for part in value.strip("[]()").split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        raise bad_value(name, value, "is not valid", f"use names among {', '.join(BENCHMARK_FORMATS)}")
    check = choice(BENCHMARK_FORMATS, FORMAT_ALIASES)
    picked = [check(name, item) for item in value]
    return list(dict.fromkeys(picked))


# ---------------------------------------------------------------- fields


def arg(default: Any, help: str, check: Check, text_types: tuple[type, ...] = (), example: Any = None) -> Any:
    """A dataclass field with its one-line `help` and its `check`.

    text_types: for fields that take text, the types a parsed command-line literal may keep; the CLI parser
    falls back to the typed text for any other type (`name=123` → "123"). example: a value shown in
    "needs a value" errors when the default is None.
    """
    meta = {"help": help, "check": check, "text_types": text_types, "example": example}
    return field(default=default, metadata=meta)


def _conf(default: float) -> Any:
    return arg(default, "confidence threshold: boxes scoring below it are dropped", number(0, 1))


def _iou() -> Any:
    return arg(0.7, "IoU threshold of non-maximum suppression", number(0, 1))


def _max_det() -> Any:
    return arg(300, "most detections kept per image", integer(1))


def _batch(default: int, what: str = "images per batch") -> Any:
    return arg(default, what, integer(1))


def _half(what: str = "run in FP16 (CUDA only)") -> Any:
    return arg(False, what, boolean)


def _classes() -> Any:
    return arg(
        None,
        "keep only these class ids, e.g. classes=0 or classes=[0,2] (None = all)",
        classes,
        example=[0, 2],
    )


def _flag(default: bool, help: str) -> Any:
    return arg(default, help, boolean)


def _project(mode: str) -> Any:
    return arg(
        None,
        "folder that holds the run folders (None = runs/detect)",
        text(True),
        (str,),
        example="runs/detect",
    )


def _name(mode: str) -> Any:
    return arg(
        None,
        f"run folder name (None = {mode}; {mode}2, {mode}3, ... when it exists)",
        text(True),
        (str,),
        example=mode,
    )


def _exist_ok() -> Any:
    return _flag(False, "reuse an existing run folder instead of numbering a new one")


def _ray() -> Any:
    return arg(
        None,
        "run on Ray: auto (the running cluster), local (start one here) or ray://host:port (None = no Ray)",
        ray_target,
        (str,),
        example="local",
    )


# ---------------------------------------------------------------- the mode dataclasses


@dataclass
class CommonArgs:
    """Arguments every mode takes; `__post_init__` validates and normalises every field."""

    mode: ClassVar[str] = ""

    model: str = arg(
        "yolo_nas_s.pt", "weights: yolo_nas_s.pt, yolo_nas_m.pt, yolo_nas_l.pt or a file path", text(), (str,)
    )
    weights_dir: str | None = arg(
        None,
        "where weights are cached and downloaded (None = the default cache)",
        text(True),
        (str,),
        example="weights",
    )
    verbose: bool = _flag(True, "print progress and results (False = errors only)")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N (or just N) or mps", device, (str, int))
    imgsz: int | tuple[int, int] = arg(640, "input size N or h,w; rounded up to a multiple of 32", imgsz)

    def __post_init__(self) -> None:
        given = self.imgsz
        for f in fields(self):
            setattr(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        if self.verbose and imgsz_pair(given) != imgsz_pair(self.imgsz):
            console.warn(
                f"imgsz={format_value(given)} is not a multiple of {STRIDE}: using imgsz={format_value(self.imgsz)}"
            )


@dataclass
class PredictArgs(CommonArgs):
    """Arguments of `yolo-nas predict`."""

    mode: ClassVar[str] = "predict"

    source: str | int | None = arg(
        None,
        "image, video, folder, glob, URL, stream or webcam index (None = the bundled sample photos)",
        source,
        (str, int),
        example="rocket.jpg",
    )
    conf: float = _conf(0.25)
    iou: float = _iou()
    max_det: int = _max_det()
    half: bool = _half()
    backend: str = _backend("auto")
    batch: int = _batch(1)
    classes: list[int] | None = _classes()  # noqa: RUF009 (a dataclasses.Field, not a default)
    agnostic_nms: bool = _flag(False, "suppress overlapping boxes across classes, not only within one")
    rect: bool = _flag(False, "letterbox to the smallest stride multiple instead of a square")
    vid_stride: int = arg(1, "read every Nth video frame", integer(1))
    save: bool = _flag(True, "save annotated images and videos")
    save_txt: bool = _flag(False, "save labels as labels/<stem>.txt (class xc yc w h, normalised)")
    save_conf: bool = _flag(False, "add the confidence to each saved label line")
    save_crop: bool = _flag(False, "save each detected box as crops/<class>/<stem>.jpg")
    save_json: bool = _flag(False, "save every detection to predictions.json (path, size, boxes, confidences, classes)")
    project: str | None = _project("predict")
    name: str | None = _name("predict")
    exist_ok: bool = _exist_ok()
    line_width: int | None = arg(
        None, "box line width in pixels (None = scaled to the image)", integer(1, optional=True), example=2
    )
    show_labels: bool = _flag(True, "draw class names on the boxes")
    show_conf: bool = _flag(True, "draw confidences on the boxes")
    show_boxes: bool = _flag(True, "draw the boxes (False = annotated outputs show the plain image)")
    show: bool = _flag(False, "show the results in a window (q stops; needs a display)")
    save_frames: bool = _flag(False, "also save every video frame as <stem>_frames/<stem>_<frame>.jpg")
    stream: bool = _flag(False, "Python: return a generator instead of a list (the CLI always streams)")
    stream_buffer: bool = _flag(False, "queue every stream frame (False = keep only the latest)")
    ray: str | None = _ray()
    workers: int = arg(0, "Ray actors with ray= (0 = one per CPU of the cluster; unused without ray)", integer(0))


@dataclass
class ValArgs(CommonArgs):
    """Arguments of `yolo-nas val`."""

    mode: ClassVar[str] = "val"

    data: str = arg("coco8.yaml", "dataset YAML (name or path)", text(), (str,))
    conf: float = _conf(0.001)
    iou: float = _iou()
    max_det: int = _max_det()
    batch: int = _batch(16)
    half: bool = _half()
    backend: str = _backend("torch")
    classes: list[int] | None = _classes()  # noqa: RUF009 (a dataclasses.Field, not a default)
    rect: bool = _flag(False, "letterbox each batch to its smallest stride multiple instead of a square")
    split: str = arg("val", "dataset split to evaluate: val, test or train", choice(("val", "test", "train")), (str,))
    protocol: str = arg(
        "coco",
        "coco: pycocotools on our pipeline; sg: also the original published protocol and metric",
        choice(("coco", "sg")),
        (str,),
    )
    save_json: bool = _flag(False, "save predictions.json and score it with COCO tools")
    save_txt: bool = _flag(False, "save predicted labels as labels/<stem>.txt")
    plots: bool = _flag(True, "save PR curves and confusion matrices")
    project: str | None = _project("val")
    name: str | None = _name("val")
    exist_ok: bool = _exist_ok()
    workers: int = arg(
        2, "image decoding threads (0 = in the main thread); with ray=, Ray actors (0 = one per CPU)", integer(0)
    )
    ray: str | None = _ray()


@dataclass
class ExportArgs(CommonArgs):
    """Arguments of `yolo-nas export`."""

    mode: ClassVar[str] = "export"

    format: str = arg(
        "onnx",
        "onnx, torchscript, openvino or engine (TensorRT; also trt, tensorrt)",
        choice(EXPORT_FORMATS, FORMAT_ALIASES),
        (str,),
    )
    batch: int = _batch(1, "batch size of the exported model")
    dynamic: bool = _flag(False, "dynamic batch and image size")
    half: bool = _half("export in FP16")
    int8: bool = _flag(False, "INT8 quantisation (onnx, openvino, engine), calibrated on `data`")
    nms: bool = _flag(False, "include non-maximum suppression in the exported model")
    simplify: bool = _flag(False, "simplify the ONNX graph (needs onnxslim)")
    opset: int | None = arg(
        None, "ONNX opset (None = the default of the installed torch)", integer(1, optional=True), example=17
    )
    data: str | None = arg(
        None,
        "dataset YAML with INT8 calibration images (None = coco8.yaml)",
        text(True),
        (str,),
        example="coco128.yaml",
    )
    fraction: float = arg(1.0, "fraction of the calibration images to use", number(0, 1, low_open=True))
    conf: float = _conf(0.25)
    iou: float = _iou()
    max_det: int = _max_det()


@dataclass
class InfoArgs(CommonArgs):
    """Arguments of `yolo-nas info` (only the common ones)."""

    mode: ClassVar[str] = "info"


@dataclass
class BenchmarkArgs(CommonArgs):
    """Arguments of `yolo-nas benchmark`."""

    mode: ClassVar[str] = "benchmark"

    formats: list[str] | None = arg(  # noqa: RUF009 (a dataclasses.Field, not a default)
        None,
        f"backends to time among {', '.join(BENCHMARK_FORMATS)} (None = every available one)",
        formats,
        (str, list, tuple),
        example=["onnx", "openvino"],
    )
    batch: int = _batch(1)
    data: str | None = arg(
        None,
        "dataset YAML: also measure mAP on it (None = timing only)",
        text(True),
        (str,),
        example="coco8.yaml",
    )
    runs: int = arg(20, "timed runs per backend", integer(1))
    warmup: int = arg(3, "untimed warm-up runs per backend", integer(0))
    half: bool = _half("also time FP16 where the backend supports it")
    int8: bool = _flag(True, "also time INT8 where the backend supports it")
    busy: int = arg(
        0, "also time every row beside this many spinning processes, in alternate rounds (0 = quiet only)", integer(0)
    )
    project: str | None = _project("benchmark")
    name: str | None = _name("benchmark")
    exist_ok: bool = _exist_ok()


@dataclass
class ServeArgs(CommonArgs):
    """Arguments of `yolo-nas serve`."""

    mode: ClassVar[str] = "serve"

    host: str = arg("127.0.0.1", "address to listen on (0.0.0.0 = every interface)", text(), (str,))
    port: int = arg(8000, "TCP port to listen on (0 = any free port)", tcp_port)
    conf: float = _conf(0.25)
    iou: float = _iou()
    max_det: int = _max_det()
    classes: list[int] | None = _classes()  # noqa: RUF009 (a dataclasses.Field, not a default)
    half: bool = _half()
    backend: str = _backend("auto")
    batch: int = _batch(8, "most requests run together in one model call (dynamic batching)")
    max_wait_ms: float = arg(5.0, "how long a batch waits for more requests, in ms", number(0, 10_000))
    max_queue: int = arg(64, "most requests waiting for the model; more are refused with 503", integer(1))
    max_body_mb: float = arg(20.0, "largest request body in MB (larger ones get 413)", number(0, 4096, low_open=True))
    max_pixels: int = arg(50_000_000, "largest image in pixels, width x height (larger ones get 413)", integer(1))
    timeout: float = arg(
        30.0, "seconds a request may take to arrive and to be answered", number(0, 3600, low_open=True)
    )
    replicas: int = arg(1, "Ray Serve replicas (with ray=; without it one process serves)", integer(1))
    ray: str | None = _ray()


MODE_ARGS: dict[str, type[CommonArgs]] = {
    "predict": PredictArgs,
    "val": ValArgs,
    "export": ExportArgs,
    "info": InfoArgs,
    "benchmark": BenchmarkArgs,
    "serve": ServeArgs,
}


# ---------------------------------------------------------------- the public helpers


def args_class(mode: str) -> type[CommonArgs]:
    """The dataclass of `mode`; UsageError (with did-you-mean) for an unknown mode."""
    if mode not in MODE_ARGS:
        hint = did_you_mean(mode, MODES) or f" Use one of {', '.join(MODES)}."
        raise UsageError(f"'{mode}' is not a valid mode.{hint}")
    return MODE_ARGS[mode]


def arg_fields(mode: str) -> dict[str, Any]:
    """Field name → dataclasses.Field of `mode`, in declaration order."""
    return {f.name: f for f in fields(args_class(mode))}


def field_names(mode: str) -> list[str]:
    """Every argument name of `mode`."""
    return list(arg_fields(mode))


def check_keys(mode: str, keys: Any, where: str = "") -> None:
    """UsageError for the first key that `mode` does not take."""
    valid = arg_fields(mode)
    for key in keys:
        if key not in valid:
            raise UsageError(unknown_key_message(mode, key, where))


def make_args(mode: str, **kwargs: Any) -> CommonArgs:
    """The validated arguments of `mode` from keyword values (the Python API's entry)."""
    check_keys(mode, kwargs)
    return args_class(mode)(**kwargs)


def defaults(mode: str) -> dict[str, Any]:
    """Argument name → default value of `mode`."""
    return {name: f.default for name, f in arg_fields(mode).items()}


def describe(mode: str) -> list[tuple[str, Any, str]]:
    """(name, default, one-line help) of every argument of `mode`."""
    return [(name, f.default, f.metadata["help"]) for name, f in arg_fields(mode).items()]


def example_value(mode: str, key: str) -> str:
    """A value to show in 'needs a value' errors: the default, else the field's example."""
    f = arg_fields(mode)[key]
    value = f.default if f.default is not None else f.metadata["example"]
    return format_value(value)


def is_bool_field(mode: str, key: str) -> bool:
    """True when `key` is a boolean argument of `mode` (a bare `key` on the command line means True)."""
    return arg_fields(mode)[key].metadata["check"] is boolean
