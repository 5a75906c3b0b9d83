"""The metadata every exported model carries, and its encoding as flat text pairs.

One record (`ExportMetadata`) for all formats. Each format stores the same pairs where it can:
ONNX `metadata_props`, TorchScript `_extra_files`, OpenVINO `rt_info`, and a header before the
TensorRT engine bytes. Text fields are stored as they are; every other field as JSON, so that
Netron and `onnx` show readable values and the loader can rebuild the typed record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from yolonas_cli.core.errors import WeightsError
from yolonas_cli.engine.backend import GraphNMS

SCHEMA_VERSION = 1
PRODUCER = "yolo-nas"
KEY_PREFIX = ""  # pairs are stored under their field names

#: How the network input is made from a photo; the engine's `Letterbox` implements exactly this.
PREPROCESSING: dict[str, Any] = {
    "resize": "longest side to imgsz*636/640 (round half up), OpenCV INTER_LINEAR",
    "pad": "centre",
    "pad_value": 114,
    "color": "RGB",
    "scale": "x/255 (float32)",
    "layout": "NCHW",
}

#: Output names of the two graph kinds.
DECODED_OUTPUTS = ("boxes", "scores")
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
INPUT_NAME = "images"


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported file says about itself (read back by each format's `read_metadata`)."""

    names: dict[int, str]  # class id -> name
    imgsz: tuple[int, int]  # (h, w) the model was exported at (its only size unless dynamic)
    batch: int  # the batch size (the largest one for dynamic TensorRT engines)
    dynamic: bool  # batch, height and width are free
    precision: str  # fp32, fp16 or int8
    nms: bool  # the graph ends with NMS: outputs END2END_OUTPUTS instead of DECODED_OUTPUTS
    model: str  # yolo_nas_s / yolo_nas_m / yolo_nas_l, or the weights' stem for a custom architecture
    source: str  # file name of the weights it was exported from
    source_sha256: str  # their sha256
    format: str  # onnx, torchscript, openvino, engine
    conf: float | None = None  # in-graph NMS settings (None without nms)
    iou: float | None = None
    max_det: int | None = None
    pre_nms_top_k: int | None = None
    stride: int = 32
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(PREPROCESSING))
    producer: str = PRODUCER
    version: str = ""  # yolo-nas version that wrote the file
    schema: int = SCHEMA_VERSION

    @property
    def graph_nms(self) -> GraphNMS | None:
        """The NMS settings of a graph that ends with NMS, else None (what `Backend.graph_nms` reports)."""
        return GraphNMS(self.conf, self.iou, self.max_det) if self.nms else None

    @property
    def output_names(self) -> tuple[str, ...]:
        return END2END_OUTPUTS if self.nms else DECODED_OUTPUTS

    def signature_problem(self, inputs: list[tuple[Any, ...]], outputs: dict[str, tuple[Any, ...]]) -> str | None:
        """Why a graph with these input shapes and {output name: shape} is not the YOLO-NAS export this
        metadata describes (None when it may be). A dimension that is not an int is dynamic and matches anything.

        Decoded graphs: one input [B, 3, H, W]; outputs boxes [B, N, 4] and scores [B, N, classes]. Graphs with
        NMS: num_dets [B, 1], det_boxes [B, K, 4], det_scores [B, K], det_classes [B, K]."""
        if len(inputs) != 1 or not _fits(inputs[0], (None, 3, None, None)):
            return f"its inputs are {_shapes(inputs)}, not one image batch [B, 3, H, W]"
        if list(outputs) != list(self.output_names):
            return f"its outputs are {', '.join(list(outputs)[:6]) or 'none'}, not {', '.join(self.output_names)}"
        expected = _END2END_SHAPES if self.nms else {"boxes": (None, None, 4), "scores": (None, None, len(self.names))}
        for name, shape in expected.items():
            if not _fits(outputs[name], shape):
                return f"its output {name} has the shape {_shapes([outputs[name]])}, not {_shapes([shape])}"
        return None

    def to_pairs(self) -> dict[str, str]:
        """Flat text pairs: text fields as is, others as JSON (class ids become JSON object keys)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[KEY_PREFIX + f.name] = value if isinstance(value, str) else json.dumps(_jsonable(value))
        return out

    @classmethod
    def from_pairs(cls, pairs: dict[str, str], where: str) -> ExportMetadata:
        """The record from `to_pairs` output; WeightsError naming `where` when it is not ours or is damaged."""
        if pairs.get(KEY_PREFIX + "producer") != PRODUCER:
            raise WeightsError(
                f"'{where}' was not exported by yolo-nas (no yolo-nas metadata in it): export it with `yolo-nas export`"
            )
        values: dict[str, Any] = {}
        try:
            for f in fields(cls):
                key = KEY_PREFIX + f.name
                if key in pairs:
                    values[f.name] = pairs[key] if f.type in ("str", str) else json.loads(pairs[key])
            values["names"] = {int(k): str(v) for k, v in values["names"].items()}
            values["imgsz"] = (int(values["imgsz"][0]), int(values["imgsz"][1]))
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"'{where}' has damaged yolo-nas metadata ({type(exc).__name__}: {exc})") from None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for printing and for the TorchScript/TensorRT JSON blob)."""
        return _jsonable(asdict(self))


_END2END_SHAPES: dict[str, tuple[Any, ...]] = {
    "num_dets": (None, 1),
    "det_boxes": (None, None, 4),
    "det_scores": (None, None),
    "det_classes": (None, None),
}


def _fits(shape: tuple[Any, ...], pattern: tuple[Any, ...]) -> bool:
    """Same rank, and equal wherever both the shape and the pattern have an int."""
    if len(shape) != len(pattern):
        return False
    return all(not (type(a) is int and type(b) is int) or a == b for a, b in zip(shape, pattern))


def _shapes(shapes: list[tuple[Any, ...]]) -> str:
    return ", ".join(
        "[" + ", ".join(str(d) if type(d) is int else "?" for d in shape[:8]) + "]" for shape in shapes[:4]
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def metadata_json(meta: ExportMetadata) -> str:
    """The pairs as one JSON object (TorchScript extra file, TensorRT header)."""
    return json.dumps(meta.to_pairs(), sort_keys=True)


def metadata_from_json(text: str | bytes, where: str) -> ExportMetadata:
    """Inverse of `metadata_json`."""
    try:
        pairs = json.loads(text)
    except ValueError:
        raise WeightsError(f"'{where}' has damaged yolo-nas metadata (not JSON)") from None
    if not isinstance(pairs, dict):
        raise WeightsError(f"'{where}' has damaged yolo-nas metadata (not a JSON object)")
    return ExportMetadata.from_pairs({str(k): str(v) for k, v in pairs.items()}, where)
