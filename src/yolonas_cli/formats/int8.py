"""INT8 post-training quantization of the ONNX graph (ONNX Runtime static quantization) and its cost report.

Quantization (what the original's PTQ does, facts §8, mapped onto ONNX Runtime):
- QDQ format, weights INT8 symmetric per output channel ("max" calibration, as the original's weights);
- activations calibrated by min/max over the calibration images. The original calibrates inputs with a
  99.99 histogram percentile; measured on the fixture weights with 4 calibration photos, that keeps only
  39% of the FP32 detections of S (min/max: 76%, percentile 99.9999: 74%), so min/max is the default;
  `symmetric=True` (INT8 with zero point 0) for TensorRT, which only takes symmetric Q/DQ; UINT8
  asymmetric otherwise (ONNX Runtime's CPU kernels prefer it);
- kept in float in OpenVINO's INT8 (NNCF) only: the backbone's stem (its one 3x3 convolution on the image,
  `FLOAT_LAYERS`, `kept_in_float`), 0.8% of the FLOPs of S at 640. On the fixture weights (S at 640, recall
  of the FP32 detections on the four photos, `scripts/int8_calibration_recall.py`, 4 / 8 / 16 / 32 / 64
  calibration images) it lifts OpenVINO's recall from 0.588 / 0.500 / 0.559 / 0.500 / 0.588 to 0.706 /
  0.588 / 0.794 / 0.735 / 0.735, for about 2 ms of its ~47 ms (its profile: FP32 convolution 2.7 ms,
  conversion to u8 1.0 ms). Keeping any one other stage, neck or head block in float as well gave 0.59-0.77
  (8 images) at 6-50% more INT8 model time. For ONNX Runtime the evidence was mixed, so its graphs (and
  TensorRT's, not measured) quantize the stem: at 640 recall 0.647 / 0.588 / 0.706 / 0.706 / 0.647 with the
  stem in float vs 0.647 / 0.588 / 0.706 / 0.735 / 0.735 without; at 320 (tests/test_int8.py) S 0.822 vs
  0.793 but tiny 0.779 vs 0.846. The original's published INT8 models are hybrid too (facts §8: chosen
  layers stay in higher precision);
- kept in float: everything after the heads' prediction convolutions (`cls_pred`, `reg_pred`): the DFL
  softmax and expectation (the original marks `proj_conv` "do not quantize"), the anchor decoding, the
  sigmoid, and the NMS when the graph has it. So the outputs (boxes, scores, detections) stay float.
  Also every value that does not depend on the image (the anchor grid and strides, computed from shapes
  and constants): INT8 would move anchors by up to 16 px at 640 (strides 8.14/15.65/31.93). The original's
  choice of layers kept at 16 bits for its published INT8 models is not public;
- biases in float for TensorRT (`symmetric=True`): its DequantizeLinear takes INT8 only, not the INT32
  biases ONNX Runtime makes by default (kept for ONNX Runtime's own INT8 kernels).

Cost report (printed after export): the FP32 and INT8 graphs run through the same engine on the first
COST_IMAGES images of the val split of `data`: with labels, mAP50-95 of both (the `yolo-nas val` pipeline);
always, the agreement of the INT8 detections with the FP32 ones at predict settings (conf 0.25): recall of
the FP32 detections (matched by class at IoU >= 0.5), mean IoU of the matched boxes, mean absolute score
change.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.engine.backend import Backend
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.engine.letterbox import to_bgr_uint8
from yolonas_cli.formats.calibration import CalibrationSet, load_split
from yolonas_cli.metrics.evaluate import evaluate
from yolonas_cli.metrics.matching import match_pairs

if TYPE_CHECKING:
    from yolonas_cli.formats.job import ExportJob

HEAD_OUTPUT_CONVS = ("cls_pred", "reg_pred")  # the last quantized layers; everything after them stays float
FLOAT_LAYERS = ("/backbone/stem/",)  # node-name parts of the layers that stay float (see the docstring)
MATCH_IOU = 0.5
COST_IMAGES = 200  # the cost report looks at most at this many val images (both models run on each)


# ---------------------------------------------------------------- quantization


def float_tail(model: Any) -> list[str]:
    """Names of the nodes downstream of the heads' prediction convolutions (decode, sigmoid, NMS)."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    starts = [n for n in model.graph.node if n.op_type == "Conv" and any(f"/{h}/" in n.name for h in HEAD_OUTPUT_CONVS)]
    if not starts:
        raise RuntimeError("cannot find the heads' cls_pred/reg_pred convolutions in the graph")
    seen: set[str] = set()
    queue = deque(out for n in starts for out in n.output)
    while queue:
        for node in consumers.get(queue.popleft(), []):
            if node.name not in seen:
                seen.add(node.name)
                queue.extend(node.output)
    return sorted(seen)


def kept_in_float(model: Any) -> list[str]:
    """Names of the nodes that OpenVINO's INT8 export leaves in float: `FLOAT_LAYERS` and the `float_tail`."""
    layers = [n.name for n in model.graph.node if any(prefix in n.name for prefix in FLOAT_LAYERS)]
    if not layers:
        raise RuntimeError(f"cannot find the layers kept in float ({', '.join(FLOAT_LAYERS)}) in the graph")
    return sorted(set(layers) | set(float_tail(model)))


def image_free_nodes(model: Any) -> list[str]:
    """Names of the nodes whose outputs do not depend on the image's values (constants, shape arithmetic, the
    anchor grid and strides); `Shape` of an image-dependent tensor carries only its shape."""
    live = {i.name for i in model.graph.input}
    free = []
    for node in model.graph.node:  # a checked ONNX graph is in topological order
        if node.op_type != "Shape" and any(name in live for name in node.input):
            live.update(node.output)
        else:
            free.append(node.name)
    return free


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a CalibrationSet (a subclass is made lazily)."""

    def __init__(self, calib: CalibrationSet, batch: int, input_name: str):
        self._batches = iter(calib.batches(batch))
        self._input = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._batches, None)
        return None if chunk is None else {self._input: chunk}


def quantize_onnx(fp32: Path, out: Path, calib: CalibrationSet, batch: int, symmetric: bool) -> None:
    """Static QDQ quantization of `fp32` into `out`, calibrated on `calib` (batches of `batch`)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(fp32))
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib, batch, model.graph.input[0].name)
    with _quiet():
        quantize_static(
            str(fp32),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(set(float_tail(model)) | set(image_free_nodes(model))),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": not symmetric},
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer prints progress to stdout and warns through the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def finish_int8(path: Path, job: ExportJob) -> None:
    """Write the metadata (precision int8) into the quantized file and check it."""
    from yolonas_cli.formats.onnx_graph import finish_onnx

    finish_onnx(path, job.meta, simplify=False)


# ---------------------------------------------------------------- the cost report


@dataclass(frozen=True)
class Agreement:
    """How far INT8 detections are from FP32 ones on the same images."""

    fp32_detections: int
    matched: int
    mean_iou: float  # over matched pairs
    score_drift: float  # mean |score_int8 - score_fp32| over matched pairs

    @property
    def recall(self) -> float:
        return self.matched / self.fp32_detections if self.fp32_detections else 1.0


@dataclass(frozen=True)
class Int8Cost:
    images: int
    agreement: Agreement
    map_fp32: float | None = None  # mAP50-95 on the val split, when it has labels
    map_int8: float | None = None

    def lines(self, where: str) -> list[str]:
        a = self.agreement
        out = [
            f"INT8 agreement with FP32 on {self.images} images of {where}: recall {a.recall:.3f} of "
            f"{a.fp32_detections} FP32 detections (IoU >= {MATCH_IOU}, same class), mean IoU "
            f"{a.mean_iou:.3f}, mean score change {a.score_drift:.4f}"
        ]
        if self.map_fp32 is not None and self.map_int8 is not None:
            out.append(
                f"INT8 cost on {where}: mAP50-95 FP32 {self.map_fp32:.4f} -> INT8 {self.map_int8:.4f} "
                f"({self.map_int8 - self.map_fp32:+.4f})"
            )
        return out


def detection_agreement(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> Agreement:
    """`metrics.matching.match_pairs` per image at IoU >= MATCH_IOU: how many reference detections are
    reproduced, their mean IoU and mean score change. Rows: (x1, y1, x2, y2, conf, class)."""
    total, ious, drifts = 0, [], []
    for ref, det in zip(reference, other):
        total += len(ref)
        for r, d, iou in match_pairs(ref, det, MATCH_IOU):
            ious.append(iou)
            drifts.append(abs(float(det[d, 4]) - float(ref[r, 4])))
    return Agreement(total, len(ious), _mean(ious), _mean(drifts))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def measure_cost(fp32: Backend, int8: Backend, data: str, imgsz: tuple[int, int]) -> Int8Cost:
    """The cost report on the first COST_IMAGES images of the val split of `data`, each exported model opened
    on the CPU: the agreement at predict settings (conf 0.25, iou 0.7), and with labels the mAP50-95 of both
    through the val loop (conf 0.001, batch 4)."""
    dataset = load_split(data, "val")
    if dataset is None:
        raise RuntimeError(f"data={data} has no val split for the INT8 cost report")
    count = min(len(dataset), COST_IMAGES)
    names = dict(dataset.names)
    engines = [Engine(backend, names, EngineSettings(imgsz=imgsz, batch=1)) for backend in (fp32, int8)]
    ref, got, labelled = [], [], False
    for index in range(count):
        sample = dataset.load(index)
        image = to_bgr_uint8(sample.image)
        ref.append(engines[0].run_batch([image])[0][0])
        got.append(engines[1].run_batch([image])[0][0])
        labelled = labelled or len(sample.labels) > 0
    agreement = detection_agreement(ref, got)
    if not labelled:
        return Int8Cost(count, agreement)
    subset = dataset.head(count)
    val_settings = EngineSettings(imgsz=imgsz, conf=0.001, batch=4)
    with console.verbosity(False):
        maps = [evaluate(Engine(b, names, val_settings), subset).metrics.box.map for b in (fp32, int8)]
    return Int8Cost(count, agreement, maps[0], maps[1])
