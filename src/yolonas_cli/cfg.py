"""Typed arguments of every mode: defaults, one-line help, validation and coercion.

Each mode has one dataclass (`PredictArgs`, `TrackArgs`, `ValArgs`, `ExportArgs`, `InfoArgs`, `BenchmarkArgs`,
`TrainArgs`, `ServeArgs`), all built on `CommonArgs` (predict's and track's on `FrameArgs`, what they share). Every
field carries its help line and its check in `dataclasses.field(metadata=...)`, and `__post_init__` runs the checks,
so an instance (from the CLI parser, from `make_args`, from direct construction or from `dataclasses.replace`)
always holds valid, normalised values, or construction raises `UsageError` with one line naming the argument, the
bad value and what is allowed.

Types are checked strictly (see `core.checks`):
- a bool field takes only True or False (`save=1` is an error; the CLI parser turns true/false into bools);
- an int field takes only integers (`batch=2.5` and `batch=2.0` are errors);
- a float field takes integers or floats (`conf=1` is 1.0); `conf=abc` is an error;
- a text field (model, data, name, ...) takes str or a path-like object (turned into str).
Normalisation: `device=N` → "cuda:N"; `imgsz` → int or (h, w) tuple, rounded up to a multiple of 32 with a
warning; `classes=N` → [N]; `format=trt|tensorrt` → "engine"; `slice=N` → (N, N); choices are lower-cased.
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
from yolonas_cli.engine.slice_config import MATCH_METRICS, MERGE_METHODS, SliceConfig, tile_size
from yolonas_cli.formats import registry

MODES = ("predict", "track", "val", "export", "info", "benchmark", "train", "serve")
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


def tile(name: str, value: Any) -> tuple[int, int] | None:
    """None (no slicing) or a tile size N or (h, w) in whole pixels above `slice_config.MIN_TILE`, as (h, w)
    (the error names `slice=`)."""
    return None if value is None else tile_size(value)


def optional(check: Check) -> Check:
    """`check`, with None allowed (None: the value is chosen later, e.g. the training recipe's)."""

    def checked(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return checked


def devices(name: str, value: Any) -> str:
    """One device (see `core.checks.device`) or several CUDA devices for multi-GPU training: `0,1` (text),
    [0, 1] or (0, 1) -> "cuda:0,cuda:1"."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.strip("[]()").split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        return device(name, value)
    picked = [device(name, int(v) if isinstance(v, str) and v.isdigit() else v) for v in value]
    if len(picked) < 2 or not all(p.startswith("cuda:") for p in picked) or len(set(picked)) != len(picked):
        raise bad_value(name, value, "is not valid", "several devices must be distinct CUDA indices, e.g. device=0,1")
    return ",".join(picked)


def cache_choice(name: str, value: Any) -> bool | str:
    """False (read images from disk every epoch), True or "ram", or "disk"; returned as False, "ram" or "disk"."""
    if value is False or value is None:
        return False
    if value is True:
        return "ram"
    return choice(("ram", "disk"))(name, value)


def resume_value(name: str, value: Any) -> bool | str:
    """False, True (resume the run of `model=`, or the latest run) or the path of a last.pt."""
    if isinstance(value, bool):
        return value
    return text()(name, value)


def freeze_value(name: str, value: Any) -> int | list[int | str] | None:
    """None, a count of leading layers, or a list of layer indices and parameter-name prefixes."""
    allowed = "use a layer count (freeze=10) or a list of layer indices and name prefixes (freeze=[0,'neck'])"
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise bad_value(name, value, "is out of range", allowed)
        return value
    items = list(value) if isinstance(value, (list, tuple)) else None
    ok = items is not None and all(
        isinstance(i, str) or (isinstance(i, int) and not isinstance(i, bool)) for i in items
    )
    if not ok:
        raise bad_value(name, value, "is not valid", allowed)
    return items


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


def _slice() -> Any:
    return arg(
        None,
        "sliced inference: tile size N or h,w in pixels, e.g. slice=640 (None = the whole image at once)",
        tile,
        example=640,
    )


def _slice_overlap() -> Any:
    return arg(0.2, "fraction of a tile shared with its neighbours, in [0, 1)", number(0, 1, high_open=True))


def _slice_full() -> Any:
    return _flag(False, "with slice: also run the whole image, for large objects")


def _slice_merge() -> Any:
    return arg(
        "nmm",
        "with slice: merge boxes across tiles by nmm (enclosing box) or nms (keep the best)",
        choice(MERGE_METHODS),
        (str,),
    )


def _slice_metric() -> Any:
    return arg(
        "ios",
        "with slice: boxes match by ios (intersection over the smaller box) or iou",
        choice(MATCH_METRICS),
        (str,),
    )


def _slice_thresh() -> Any:
    return arg(0.5, "with slice: boxes match when slice_metric is above this", number(0, 1))


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
    imgsz: int | tuple[int, int] = arg(640, "input size N or h,w (at most 8192); rounded up to a multiple of 32", imgsz)

    def __post_init__(self) -> None:
        given = self.imgsz
        for f in fields(self):
            setattr(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        if self.verbose and imgsz_pair(given) != imgsz_pair(self.imgsz):
            console.warn(
                f"imgsz={format_value(given)} is not a multiple of {STRIDE}: using imgsz={format_value(self.imgsz)}"
            )


@dataclass
class FrameArgs(CommonArgs):
    """The arguments of the modes that run the model over a source's images and frames, `predict` and `track`
    (not a mode itself)."""

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
    slice: tuple[int, int] | None = _slice()
    slice_overlap: float = _slice_overlap()
    slice_full: bool = _slice_full()
    slice_merge: str = _slice_merge()
    slice_metric: str = _slice_metric()
    slice_thresh: float = _slice_thresh()


@dataclass
class PredictArgs(FrameArgs):
    """Arguments of `yolo-nas predict`: the frame arguments and Ray's."""

    mode: ClassVar[str] = "predict"

    ray: str | None = _ray()
    workers: int = arg(0, "Ray actors with ray= (0 = one per CPU of the cluster; unused without ray)", integer(0))


@dataclass
class TrackArgs(FrameArgs):
    """Arguments of `yolo-nas track`: predict's (without Ray: tracking follows the frames in order), a lower
    default `conf` (ByteTrack's second association needs the low-scoring boxes), and the tracker."""

    mode: ClassVar[str] = "track"

    conf: float = _conf(0.1)
    project: str | None = _project("track")
    name: str | None = _name("track")
    tracker: str = arg(
        "bytetrack.yaml", "tracker YAML: bytetrack.yaml, botsort.yaml (no ReID) or a path", text(), (str,)
    )
    persist: bool = _flag(False, "Python: keep the tracker and its ids from the previous track() call")


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
    slice: tuple[int, int] | None = _slice()
    slice_overlap: float = _slice_overlap()
    slice_full: bool = _slice_full()
    slice_merge: str = _slice_merge()
    slice_metric: str = _slice_metric()
    slice_thresh: float = _slice_thresh()


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


def _recipe(help: str, check: Check, values: str, example: Any) -> Any:
    """A training argument whose default is the recipe's (None = the recipe's value, listed in the help)."""
    return arg(None, f"{help} (None = the recipe's: {values})", optional(check), example=example)


def _train(default: Any, help: str, check: Check, example: Any = None) -> Any:
    """A training argument whose default is the same in every recipe."""
    return arg(default, help, check, example=example)


@dataclass
class TrainArgs(CommonArgs):
    """Arguments of `yolo-nas train`: Ultralytics' names, the original recipe's values (modes/train/recipe.py).

    Arguments whose value differs between the recipes (roboflow, coco) or the model sizes default to None, which
    means the chosen recipe's value; the others carry the value every recipe shares. `help train` lists both.
    """

    mode: ClassVar[str] = "train"

    model: str = arg(
        "yolo_nas_s.pt",
        "start point: weights (yolo_nas_s.pt, a file path, a last.pt) or, with pretrained=False, an architecture "
        "(yolo_nas_s, yolo_nas_m, yolo_nas_l)",
        text(),
        (str,),
    )
    device: str = arg(
        "auto",
        "auto, cpu, cuda, cuda:N (or just N), mps, or several GPUs for DDP: 0,1",
        devices,
        (str, int, tuple, list),
    )
    data: str | None = arg(None, "dataset YAML with train and val splits (name or path)", text(True), (str,), "my.yaml")
    recipe: str = arg(
        "roboflow",
        "the original's recipe: roboflow (fine-tuning) or coco (training on COCO)",
        choice(("roboflow", "coco")),
        (str,),
    )
    pretrained: bool = _flag(True, "start from the weights in model= (False: random weights of its architecture)")
    epochs: int | None = _recipe("epochs to train", integer(1), "roboflow 100, coco 300", 100)
    batch: int | None = _recipe("images per batch and process", integer(1), "roboflow 16 (S), 12 (M, L); coco 32", 16)
    workers: int | None = _recipe(
        "data loading processes (0 = in the main process)", integer(0), "roboflow 4, coco 8", 4
    )
    optimizer: str = _train(
        "auto", "auto (the recipe's AdamW), AdamW, Adam or SGD", choice(("auto", "adamw", "adam", "sgd"))
    )
    lr0: float | None = _recipe(
        "initial (peak) learning rate", number(0, 1, low_open=True), "roboflow 5e-4 (S), 4e-4 (M, L); coco 2e-4", 5e-4
    )
    lrf: float = _train(0.1, "final learning rate as a fraction of lr0 (the cosine ends near lr0*lrf)", number(0, 1))
    momentum: float = _train(0.9, "AdamW/Adam beta1, SGD momentum", number(0, 1))
    weight_decay: float | None = _recipe(
        "weight decay (none on biases and BatchNorm)", number(0, 1), "roboflow 1e-4, coco 1e-5", 1e-4
    )
    warmup_epochs: int | None = _recipe("epochs of linear warmup from 1e-6", integer(0), "roboflow 3, coco 0", 3)
    lr_warmup_steps: int = _train(
        1000,
        "the original's lr_warmup_steps: the coco recipe's batch warmup, and the steps the cosine waits for "
        "(the roboflow recipe inherits 1000 too; 0 starts the cosine right after the warmup epochs)",
        integer(0),
    )
    cos_lr: bool = _flag(True, "cosine learning-rate decay (False: linear)")
    seed: int = _train(42, "random seed of the run (data order, augmentation, new head weights)", integer(0))
    deterministic: bool = _flag(True, "deterministic algorithms (a run repeats bit for bit on the same machine)")
    amp: bool = _flag(True, "mixed precision on CUDA (the CPU trains in FP32)")
    patience: int = _train(100, "stop after this many epochs without a better fitness (0 = never)", integer(0))
    save_period: int = _train(-1, "also save weights/epoch<N>.pt every N epochs (-1 = off)", integer(-1))
    cache: bool | str = _train(
        False, "keep decoded images in ram or on disk (False = read every epoch)", cache_choice, "ram"
    )
    fraction: float = _train(1.0, "fraction of the train images to use", number(0, 1, low_open=True))
    min_samples: int | None = _recipe(
        "images drawn per epoch at least (with replacement when the dataset is smaller)",
        integer(0),
        "roboflow 512, coco 0",
        0,
    )
    freeze: int | list[int | str] | None = _train(  # noqa: RUF009 (a dataclasses.Field, not a default)
        None,
        "freeze the first N layers, or the layers / name prefixes listed (None = train everything)",
        freeze_value,
        10,
    )
    resume: bool | str = _train(
        False, "continue an interrupted run: True with model=<last.pt>, or resume=<last.pt>", resume_value
    )
    val: bool = _flag(True, "validate every epoch (False: only after the last)")
    plots: bool = _flag(True, "save the loss and metric curves (results.png)")
    project: str | None = _project("train")
    name: str | None = _name("train")
    exist_ok: bool = _exist_ok()
    cls: float = _train(1.0, "classification (varifocal) loss weight", number(0, 1e3))
    box: float = _train(2.5, "box (GIoU) loss weight", number(0, 1e3))
    dfl: float = _train(0.5, "distribution focal loss weight", number(0, 1e3))
    close_mosaic: int = _train(0, "train the last N epochs without mosaic and mixup", integer(0))
    mosaic: float | None = _recipe("mosaic probability", number(0, 1), "roboflow 1.0, coco 0.0", 1.0)
    mixup: float | None = _recipe("mixup probability", number(0, 1), "roboflow 0.0, coco 0.5", 0.0)
    degrees: float = _train(0.0, "rotation range in degrees (+-)", number(0, 180))
    translate: float | None = _recipe(
        "translation range (+- fraction of the size)", number(0, 1), "roboflow 0.1, coco 0.25", 0.1
    )
    scale: float = _train(0.5, "scale gain range (+-)", number(0, 0.99))
    shear: float = _train(0.0, "shear range in degrees (+-)", number(0, 45))
    flipud: float = _train(0.0, "vertical flip probability", number(0, 1))
    fliplr: float = _train(0.5, "horizontal flip probability", number(0, 1))
    bgr: float | None = _recipe("channel swap probability", number(0, 1), "roboflow 0.0, coco 0.5", 0.0)
    hsv_h: float | None = _recipe(
        "hue shift (+- fraction of the hue circle)", number(0, 1), "roboflow 5/180 = 0.0278, coco 18/180 = 0.1", 0.1
    )
    hsv_s: float = _train(30 / 255, "saturation shift (+- fraction of 255)", number(0, 1))
    hsv_v: float = _train(30 / 255, "value (brightness) shift (+- fraction of 255)", number(0, 1))


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
    "track": TrackArgs,
    "val": ValArgs,
    "export": ExportArgs,
    "info": InfoArgs,
    "benchmark": BenchmarkArgs,
    "train": TrainArgs,
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


def slice_config(args: FrameArgs | ValArgs) -> SliceConfig | None:
    """The sliced-inference settings of a predict, track or val run (None without `slice`); boxes of other
    classes are merged too with `agnostic_nms`."""
    if args.slice is None:
        return None
    return SliceConfig(
        size=args.slice,
        overlap=args.slice_overlap,
        full=args.slice_full,
        merge=args.slice_merge,
        metric=args.slice_metric,
        match_thresh=args.slice_thresh,
        agnostic=getattr(args, "agnostic_nms", False),
    )
