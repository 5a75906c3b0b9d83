"""Every format, one row each (a `base.Format`), and the lookups by name and by path.

Adding a format: write its module in this package (export, runtime backend, metadata reader) and add its row.
"""

from __future__ import annotations

from pathlib import Path

from yolonas_cli.formats.base import Format, pip_extra

_DECODING = frozenset({"batch", "dynamic", "half"})
_NMS = frozenset({"nms", "conf", "iou", "max_det"})
_INT8 = frozenset({"int8", "data", "fraction"})
_ONNX = frozenset({"simplify", "opset"})

FORMATS: tuple[Format, ...] = (
    Format("pytorch", "PyTorch", "PyTorch", "pytorch", aliases=("pt", "torch"), suffix=".pt", exportable=False),
    Format(
        "onnx",
        "ONNX",
        "ONNX Runtime",
        "onnx",
        suffix=".onnx",
        extra="onnx",
        export_needs=(("onnx", pip_extra("onnx")),),
        int8_needs=(("onnxruntime", pip_extra("onnx")),),
        runtime_needs=("onnxruntime",),
        takes=_DECODING | _INT8 | _NMS | _ONNX,
    ),
    Format("torchscript", "TorchScript", "TorchScript", "torchscript", suffix=".torchscript", takes=_DECODING),
    Format(
        "openvino",
        "OpenVINO",
        "OpenVINO",
        "openvino",
        suffix="_openvino_model",
        folder=True,
        opens=(".xml",),
        extra="openvino",
        export_needs=(("openvino", pip_extra("openvino")), ("onnx", pip_extra("openvino"))),
        int8_needs=(("nncf", "pip install nncf"),),
        runtime_needs=("openvino",),
        takes=_DECODING | {"opset"} | _INT8 | _NMS,
    ),
    Format(
        "engine",
        "TensorRT",
        "TensorRT",
        "tensorrt",
        aliases=("trt", "tensorrt"),
        suffix=".engine",
        extra="tensorrt",
        export_needs=(("tensorrt", pip_extra("tensorrt")), ("onnx", pip_extra("tensorrt"))),
        int8_needs=(("onnxruntime", pip_extra("onnx")),),  # ONNX Runtime's quantizer makes the QDQ graph
        runtime_needs=("tensorrt",),
        takes=_DECODING | _INT8 | _NMS | _ONNX,
        needs_cuda=True,
    ),
)

#: `backend=` values that run weights in another runtime (converted once, see `formats.auto`) -> their format.
CONVERTIBLE: dict[str, str] = {"openvino": "openvino", "onnxruntime": "onnx"}
#: Every `backend=` value (auto: the fastest installed on a CPU; torch: PyTorch) and other spellings of them.
BACKENDS: tuple[str, ...] = ("auto", "torch", *CONVERTIBLE)
BACKEND_ALIASES: dict[str, str] = {"pytorch": "torch", "pt": "torch", "onnx": "onnxruntime", "ort": "onnxruntime"}

BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}
EXPORT_FORMATS: tuple[str, ...] = tuple(f.name for f in FORMATS if f.exportable)
ALIASES: dict[str, str] = {alias: f.name for f in FORMATS for alias in f.aliases}


def get(name: str) -> Format:
    """The format called `name` (or one of its aliases); KeyError for an unknown name."""
    return BY_NAME[ALIASES.get(name, name)]


def format_of(path: str | Path) -> Format | None:
    """The format of an exported file or folder (by its name; a folder also by holding an .xml), else None."""
    path = Path(path)
    folders_first = sorted(FORMATS, key=lambda f: not f.folder)  # a folder is known by its content too
    return next((f for f in folders_first if f.recognizes(path)), None)


def is_exported(path: str | Path) -> bool:
    """True when `path` names an exported model (ONNX, TorchScript, OpenVINO folder or XML, TensorRT engine)."""
    return format_of(path) is not None
