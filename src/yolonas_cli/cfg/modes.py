"""The argument dataclasses of the inference modes: `CommonArgs` (every mode), `FrameArgs` (predict and track),
`PredictArgs`, `TrackArgs`, `ValArgs`, `ExportArgs`, `InfoArgs`, `BenchmarkArgs`, `ServeArgs`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from yolonas_cli.cfg.builders import (
    arg,
    backend_arg,
    batch_arg,
    classes_arg,
    conf_arg,
    exist_ok_arg,
    flag_arg,
    half_arg,
    iou_arg,
    max_det_arg,
    name_arg,
    project_arg,
    ray_arg,
    slice_arg,
    slice_full_arg,
    slice_merge_arg,
    slice_metric_arg,
    slice_overlap_arg,
    slice_thresh_arg,
)
from yolonas_cli.cfg.values import BENCHMARK_FORMATS, EXPORT_FORMATS, FORMAT_ALIASES, formats, tcp_port
from yolonas_cli.core import console
from yolonas_cli.core.checks import (
    choice,
    device,
    format_value,
    imgsz,
    integer,
    number,
    source,
    text,
)
from yolonas_cli.core.sizes import STRIDE, imgsz_pair


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
    verbose: bool = flag_arg(True, "print progress and results (False = errors only)")
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
    conf: float = conf_arg(0.25)
    iou: float = iou_arg()
    max_det: int = max_det_arg()
    half: bool = half_arg()
    backend: str = backend_arg("auto")
    batch: int = batch_arg(1)
    classes: list[int] | None = classes_arg()  # noqa: RUF009 (a dataclasses.Field, not a default)
    agnostic_nms: bool = flag_arg(False, "suppress overlapping boxes across classes, not only within one")
    rect: bool = flag_arg(False, "letterbox to the smallest stride multiple instead of a square")
    vid_stride: int = arg(1, "read every Nth video frame", integer(1))
    save: bool = flag_arg(True, "save annotated images and videos")
    save_txt: bool = flag_arg(False, "save labels as labels/<stem>.txt (class xc yc w h, normalised)")
    save_conf: bool = flag_arg(False, "add the confidence to each saved label line")
    save_crop: bool = flag_arg(False, "save each detected box as crops/<class>/<stem>.jpg")
    save_json: bool = flag_arg(
        False, "save every detection to predictions.json (path, size, boxes, confidences, classes)"
    )
    project: str | None = project_arg("predict")
    name: str | None = name_arg("predict")
    exist_ok: bool = exist_ok_arg()
    line_width: int | None = arg(
        None, "box line width in pixels (None = scaled to the image)", integer(1, optional=True), example=2
    )
    show_labels: bool = flag_arg(True, "draw class names on the boxes")
    show_conf: bool = flag_arg(True, "draw confidences on the boxes")
    show_boxes: bool = flag_arg(True, "draw the boxes (False = annotated outputs show the plain image)")
    show: bool = flag_arg(False, "show the results in a window (q stops; needs a display)")
    save_frames: bool = flag_arg(False, "also save every video frame as <stem>_frames/<stem>_<frame>.jpg")
    stream: bool = flag_arg(False, "Python: return a generator instead of a list (the CLI always streams)")
    stream_buffer: bool = flag_arg(False, "queue every stream frame (False = keep only the latest)")
    slice: tuple[int, int] | None = slice_arg()
    slice_overlap: float = slice_overlap_arg()
    slice_full: bool = slice_full_arg()
    slice_merge: str = slice_merge_arg()
    slice_metric: str = slice_metric_arg()
    slice_thresh: float = slice_thresh_arg()


@dataclass
class PredictArgs(FrameArgs):
    """Arguments of `yolo-nas predict`: the frame arguments and Ray's."""

    mode: ClassVar[str] = "predict"

    ray: str | None = ray_arg()
    workers: int = arg(0, "Ray actors with ray= (0 = one per CPU of the cluster; unused without ray)", integer(0))


@dataclass
class TrackArgs(FrameArgs):
    """Arguments of `yolo-nas track`: predict's (without Ray: tracking follows the frames in order), a lower
    default `conf` (ByteTrack's second association needs the low-scoring boxes), and the tracker."""

    mode: ClassVar[str] = "track"

    conf: float = conf_arg(0.1)
    project: str | None = project_arg("track")
    name: str | None = name_arg("track")
    tracker: str = arg(
        "bytetrack.yaml", "tracker YAML: bytetrack.yaml, botsort.yaml (no ReID) or a path", text(), (str,)
    )
    persist: bool = flag_arg(False, "Python: keep the tracker and its ids from the previous track() call")


@dataclass
class ValArgs(CommonArgs):
    """Arguments of `yolo-nas val`."""

    mode: ClassVar[str] = "val"

    data: str = arg("coco8.yaml", "dataset YAML (name or path)", text(), (str,))
    conf: float = conf_arg(0.001)
    iou: float = iou_arg()
    max_det: int = max_det_arg()
    batch: int = batch_arg(16)
    half: bool = half_arg()
    backend: str = backend_arg("torch")
    classes: list[int] | None = classes_arg()  # noqa: RUF009 (a dataclasses.Field, not a default)
    rect: bool = flag_arg(False, "letterbox each batch to its smallest stride multiple instead of a square")
    split: str = arg("val", "dataset split to evaluate: val, test or train", choice(("val", "test", "train")), (str,))
    protocol: str = arg(
        "coco",
        "coco: pycocotools on our pipeline; sg: also the original published protocol and metric",
        choice(("coco", "sg")),
        (str,),
    )
    save_json: bool = flag_arg(False, "save predictions.json and score it with COCO tools")
    save_txt: bool = flag_arg(False, "save predicted labels as labels/<stem>.txt")
    plots: bool = flag_arg(True, "save PR curves and confusion matrices")
    project: str | None = project_arg("val")
    name: str | None = name_arg("val")
    exist_ok: bool = exist_ok_arg()
    workers: int = arg(
        2, "image decoding threads (0 = in the main thread); with ray=, Ray actors (0 = one per CPU)", integer(0)
    )
    ray: str | None = ray_arg()
    slice: tuple[int, int] | None = slice_arg()
    slice_overlap: float = slice_overlap_arg()
    slice_full: bool = slice_full_arg()
    slice_merge: str = slice_merge_arg()
    slice_metric: str = slice_metric_arg()
    slice_thresh: float = slice_thresh_arg()


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
    batch: int = batch_arg(1, "batch size of the exported model")
    dynamic: bool = flag_arg(False, "dynamic batch and image size")
    half: bool = half_arg("export in FP16")
    int8: bool = flag_arg(False, "INT8 quantisation (onnx, openvino, engine), calibrated on `data`")
    nms: bool = flag_arg(False, "include non-maximum suppression in the exported model")
    simplify: bool = flag_arg(False, "simplify the ONNX graph (needs onnxslim)")
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
    conf: float = conf_arg(0.25)
    iou: float = iou_arg()
    max_det: int = max_det_arg()


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
    batch: int = batch_arg(1)
    data: str | None = arg(
        None,
        "dataset YAML: also measure mAP on it (None = timing only)",
        text(True),
        (str,),
        example="coco8.yaml",
    )
    runs: int = arg(20, "timed runs per backend", integer(1))
    warmup: int = arg(3, "untimed warm-up runs per backend", integer(0))
    half: bool = half_arg("also time FP16 where the backend supports it")
    int8: bool = flag_arg(True, "also time INT8 where the backend supports it")
    busy: int = arg(
        0, "also time every row beside this many spinning processes, in alternate rounds (0 = quiet only)", integer(0)
    )
    project: str | None = project_arg("benchmark")
    name: str | None = name_arg("benchmark")
    exist_ok: bool = exist_ok_arg()


@dataclass
class ServeArgs(CommonArgs):
    """Arguments of `yolo-nas serve`."""

    mode: ClassVar[str] = "serve"

    host: str = arg("127.0.0.1", "address to listen on (0.0.0.0 = every interface)", text(), (str,))
    port: int = arg(8000, "TCP port to listen on (0 = any free port)", tcp_port)
    conf: float = conf_arg(0.25)
    iou: float = iou_arg()
    max_det: int = max_det_arg()
    classes: list[int] | None = classes_arg()  # noqa: RUF009 (a dataclasses.Field, not a default)
    half: bool = half_arg()
    backend: str = backend_arg("auto")
    batch: int = batch_arg(8, "most requests run together in one model call (dynamic batching)")
    max_wait_ms: float = arg(5.0, "how long a batch waits for more requests, in ms", number(0, 10_000))
    max_queue: int = arg(64, "most requests waiting for the model; more are refused with 503", integer(1))
    max_body_mb: float = arg(20.0, "largest request body in MB (larger ones get 413)", number(0, 4096, low_open=True))
    max_pixels: int = arg(50_000_000, "largest image in pixels, width x height (larger ones get 413)", integer(1))
    timeout: float = arg(
        30.0, "seconds a request may take to arrive and to be answered", number(0, 3600, low_open=True)
    )
    replicas: int = arg(1, "Ray Serve replicas (with ray=; without it one process serves)", integer(1))
    ray: str | None = ray_arg()
