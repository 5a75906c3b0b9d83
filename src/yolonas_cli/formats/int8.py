"""INT8 post-training quantization of the ONNX graph (ONNX Runtime static quantization) and its cost report.

Quantization (what the original's PTQ does, facts §8, mapped onto ONNX Runtime):
- QDQ format, weights INT8 symmetric per output channel ("max" calibration, as the original's weights);
- activations calibrated by min/max over the calibration images. The original calibrates inputs with a
  99.99 histogram percentile; measured on the fixture weights with 4 calibration photos, that keeps only
  39% of the FP32 detections of S (min/max: 76%, percentile 99.9999: 74%), so min/max is the default;
  `symmetric=True` (INT8 with zero point 0) for TensorRT, which only takes symmetric Q/DQ; UINT8
  asymmetric otherwise (ONNX Runtime's CPU kernels prefer it);
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
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.files import atomic_file
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.formats.calibration import CalibrationSet, calibration_for

if TYPE_CHECKING:
    from yolonas_cli.data.datasets.dataset import Dataset
    from yolonas_cli.modes.export import ExportJob

HEAD_OUTPUT_CONVS = ("cls_pred", "reg_pred")  # the last quantized layers; everything after them stays float
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


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from yolonas_cli.metrics.coco import box_iou_np

    return box_iou_np(a, b)


def detection_agreement(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> Agreement:
    """Greedy one-to-one matching per image: each reference detection (in decreasing score) takes the
    unmatched `other` detection of the same class with the highest IoU, if that IoU >= MATCH_IOU.
    Rows: (x1, y1, x2, y2, conf, class)."""
    total, ious, drifts = 0, [], []
    for ref, det in zip(reference, other):
        total += len(ref)
        if not len(ref) or not len(det):
            continue
        iou = _iou_matrix(ref[:, :4], det[:, :4]) * (ref[:, None, 5] == det[None, :, 5])
        free = np.ones(len(det), bool)
        for r in np.argsort(-ref[:, 4], kind="stable"):
            candidates = np.where(free, iou[r], -1.0)
            best = int(candidates.argmax())
            if candidates[best] >= MATCH_IOU:
                free[best] = False
                ious.append(candidates[best])
                drifts.append(abs(float(det[best, 4]) - float(ref[r, 4])))
    return Agreement(total, len(ious), _mean(ious), _mean(drifts))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _predict_engine(path: Path, imgsz: tuple[int, int]) -> Any:
    """An engine at predict settings (conf 0.25, iou 0.7) for an exported model on the CPU."""
    from yolonas_cli.formats.registry import open_exported

    return open_exported(path, "cpu").make_engine(EngineSettings(imgsz=imgsz, batch=1))


def val_map(path: Path, data: str, imgsz: tuple[int, int], scratch: Path) -> float:
    """mAP50-95 of an exported model on the val split of `data`, with the `yolo-nas val` pipeline."""
    from yolonas_cli.cfg import ValArgs
    from yolonas_cli.formats.registry import open_exported
    from yolonas_cli.modes.val import validate

    args = ValArgs(
        model=str(path),
        data=data,
        imgsz=imgsz,
        batch=4,
        plots=False,
        verbose=False,
        project=str(scratch),
        name=path.stem,
        exist_ok=True,
        workers=0,
    )
    return float(validate(open_exported(path, "cpu"), args).box.map)  # type: ignore[arg-type]


def subset_yaml(dataset: Dataset, count: int, scratch: Path) -> str:
    """A dataset YAML whose val split is the first `count` images of `dataset` (same labels, same names)."""
    import yaml

    listing = scratch / "val_subset.txt"
    listing.write_text("".join(f"{p.resolve()}\n" for p in dataset.files[:count]))
    spec: dict[str, Any] = {"path": str(dataset.root), "val": str(listing), "names": dict(dataset.names)}
    if dataset.coco is not None:
        spec["annotations"] = {"val": str(dataset.coco.path)}
    path = scratch / "val_subset.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def measure_cost(fp32: Path, int8: Path, data: str, imgsz: tuple[int, int]) -> Int8Cost:
    """The cost report on the first COST_IMAGES images of the val split: agreement, and mAP with labels."""
    from yolonas_cli.engine.letterbox import to_bgr_uint8
    from yolonas_cli.formats.calibration import load_split

    dataset = load_split(data, "val")
    if dataset is None:
        raise RuntimeError(f"data={data} has no val split for the INT8 cost report")
    count = min(len(dataset), COST_IMAGES)
    engines = (_predict_engine(fp32, imgsz), _predict_engine(int8, imgsz))
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
    with tempfile.TemporaryDirectory() as scratch:
        subset = data if count == len(dataset) else subset_yaml(dataset, count, Path(scratch))
        maps = [val_map(p, subset, imgsz, Path(scratch)) for p in (fp32, int8)]
    return Int8Cost(count, agreement, maps[0], maps[1])


# ---------------------------------------------------------------- format=onnx int8=True


def export_int8_onnx(job: ExportJob) -> Path:
    """FP32 graph -> calibrate on `data` -> QDQ INT8 graph at job.output; prints the cost report."""
    from yolonas_cli.formats.onnx_graph import build_onnx

    data, calib = calibration_for(job.args.data, job.args.fraction, job.imgsz, "ONNX Runtime")
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = build_onnx(job, Path(scratch) / "fp32.onnx", half=False, simplify=False, precision="fp32")
        with atomic_file(job.output) as temp:
            quantize_onnx(fp32, temp, calib, job.args.batch, symmetric=False)
            finish_int8(temp, job)
            cost = measure_cost(fp32, temp, data, job.imgsz)
    for line in cost.lines(f"{data} (val)"):
        console.info(line)
    return job.output
