"""The ONNX graphs a TensorRT engine is built from (`tensorrt.onnx_for_engine`), checked on the CPU
against what TensorRT's ONNX parser documents that it takes. No GPU and no TensorRT are needed: this guards
the graphs between the (rare) runs of scripts/gpu_check.py.

Graphs (the tiny fixture model): FP32 dynamic with the in-graph NMS (`nms=True`), FP16 body (`half=True`),
and the symmetric INT8 QDQ graph (`int8=True`, calibrated on the sample photos).

yolo-nas needs TensorRT 10 or newer (strongly typed networks). Sources of the rules (quoted next to each
table or test):
- onnx/onnx-tensorrt docs/operators.md, TensorRT 10.x (10.0: "opset 9 to opset 20"): the operator table,
  the data types, the per-operator restrictions. The operator table below is also "Y" in the TensorRT 8.5
  table, and K stays within 8.6's TopK limit: no margin is given up by being conservative.
- onnx/onnx-tensorrt onnxOpImporters.cpp (TensorRT 10.x parser), QuantDequantLinearHelper: zero points must
  be all zeros, scales must all be positive, a per-channel scale has one value per channel of `axis`.
- TensorRT operator docs, TopK: "k <= 3840" (10.x; 8.6: 1024); NMS: IoU threshold in [0, 1].
- onnx-tensorrt issue #850, onnxruntime #17738 / #14229: ONNX Runtime's default INT32 bias DequantizeLinear
  is rejected by TensorRT ("only activation types allowed as input to this layer").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from yolonas_cli.api import NAS
from yolonas_cli.cfg import ExportArgs
from yolonas_cli.formats.int8 import float_tail

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'yolo-nas[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'yolo-nas[onnx]')")
from onnx import TensorProto, numpy_helper  # noqa: E402

pytestmark = [pytest.mark.onnx, pytest.mark.usefixtures("quiet_console")]

IMGSZ = 160
MAX_DET = 100  # a non-default max_det, so that the NMS check below sees the argument travel into the graph

# The operators these graphs use (plus a few close relatives), each "Y" in BOTH tables of
# onnx/onnx-tensorrt docs/operators.md: TensorRT 10.x (10.15) and TensorRT 8.5 (8.6 has no table of its own).
TENSORRT_OPS = frozenset(
    {
        "Add",
        "Cast",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "DequantizeLinear",
        "Div",
        "Equal",
        "Expand",
        "Flatten",
        "Gather",
        "GatherElements",
        "Greater",
        "Identity",
        "Less",
        "MaxPool",
        "Mul",
        "NonMaxSuppression",
        "Not",
        "Pad",
        "QuantizeLinear",
        "Range",
        "ReduceSum",
        "Relu",
        "Reshape",
        "ScatterND",
        "Shape",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Squeeze",
        "Sub",
        "TopK",
        "Transpose",
        "Unsqueeze",
        "Where",
    }
)
# operators.md 10.x: "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20".
OPSET_RANGE = (9, 20)
# operators.md 10.x data types, less DOUBLE ("limited support") and UINT8 ("only ... network input or output").
TENSORRT_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL}
)
# operators.md 10.x, Cast: FP32, FP16, BF16, INT32, INT64, UINT8, BOOL (no INT8: quantized types come from Q/DQ).
CAST_TARGETS = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL}
)
# Engine inputs/outputs: float32 images in, float32 boxes/scores and int32 counts/classes out.
IO_TYPES = frozenset({TensorProto.FLOAT, TensorProto.INT32})
TOPK_MAX_K = 1024  # 10.x TopK: "K input must be less than 3840"; the graph's K is 1024 at most
# Inputs the parser needs as build-time constants: (op, input index), operators.md "must be an initializer"
# (8.5: TopK K, Squeeze/Slice axes, NonMaxSuppression's three scalars in 8.4) / "resolvable to a constant"
# (10.x: Squeeze/Unsqueeze axes), 10.x ReduceSum axes.
CONSTANT_INPUTS = {
    "TopK": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ReduceSum": (1,),
    "Slice": (3,),
    "NonMaxSuppression": (2, 3, 4),
}


def _export_job(weights: Path, **kwargs):
    from yolonas_cli.modes.export import export_job

    args = ExportArgs(model=str(weights), format="engine", imgsz=IMGSZ, **kwargs)
    return export_job(NAS(weights), args, torch.device("cpu"), weights.with_suffix(".engine"))


@pytest.fixture(scope="module")
def graphs(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """name -> onnx.ModelProto of the graph `onnx_for_engine` hands to TensorRT (exported once)."""
    from test_int8 import make_dataset
    from yolonas_cli.formats.tensorrt import onnx_for_engine

    root = tmp_path_factory.mktemp("trt_graphs")
    weights = Path(shutil.copy(tiny_checkpoint, root / "tiny.pt"))
    data = make_dataset(root / "data", weights, labels=False)
    settings = {
        "fp32_nms_dynamic": {"dynamic": True, "nms": True, "batch": 2, "max_det": MAX_DET},
        "fp16": {"half": True},
        "int8": {"int8": True, "data": str(data), "fraction": 0.25},
    }
    out = {}
    for name, kwargs in settings.items():
        scratch = root / name
        scratch.mkdir()
        out[name] = onnx.load(str(onnx_for_engine(_export_job(weights, **kwargs), scratch)))
    return out


ALL = ("fp32_nms_dynamic", "fp16", "int8")


def constants(model) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs (what the parser imports as weights)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def nodes(model, op_type: str) -> list:
    return [n for n in model.graph.node if n.op_type == op_type]


# ---------------------------------------------------------------- every graph


@pytest.mark.parametrize("name", ALL)
def test_operators_and_opset_are_in_the_tensorrt_tables(graphs: dict, name: str) -> None:
    model = graphs[name]
    unsupported = {n.op_type for n in model.graph.node} - TENSORRT_OPS
    assert not unsupported, f"{name}: operators outside the TensorRT support table: {sorted(unsupported)}"
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node), "custom-domain operator in the graph"
    opsets = {o.domain: o.version for o in model.opset_import}
    assert set(opsets) <= {"", "ai.onnx"}, f"extra opset domains {opsets}"
    assert OPSET_RANGE[0] <= opsets.get("", opsets.get("ai.onnx", 0)) <= OPSET_RANGE[1]


@pytest.mark.parametrize("name", ALL)
def test_tensor_types_are_tensorrt_types(graphs: dict, name: str) -> None:
    model = graphs[name]
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    types.update({t.name: t.data_type for t in model.graph.initializer})
    produced = [o for n in model.graph.node for o in n.output]
    missing = [o for o in produced if o not in types]
    assert not missing, f"{name}: no inferred type for {missing[:5]}"
    bad = {o: TensorProto.DataType.Name(types[o]) for o in produced if types[o] not in TENSORRT_TYPES}
    assert not bad, f"{name}: tensors of types TensorRT does not take: {dict(list(bad.items())[:5])}"
    targets = {attrs(n)["to"] for n in nodes(model, "Cast")}
    assert targets <= CAST_TARGETS, f"{name}: Cast to {[TensorProto.DataType.Name(t) for t in targets]}"
    io = [*model.graph.input, *model.graph.output]
    assert all(v.type.tensor_type.elem_type in IO_TYPES for v in io), f"{name}: engine I/O type not float32/int32"
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT


@pytest.mark.parametrize("name", ALL)
def test_inputs_the_parser_needs_as_constants(graphs: dict, name: str) -> None:
    model = graphs[name]
    values = constants(model)
    for node in model.graph.node:
        for index in CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index]:
                assert node.input[index] in values, f"{name}: {node.name} input {index} is not a constant"
    for node in nodes(model, "ScatterND"):
        assert attrs(node).get("reduction", b"none") in (b"none", "none"), "ScatterND reduction is unsupported"
    for node in nodes(model, "Pad"):
        assert attrs(node).get("mode", b"constant") in (b"constant", b"reflect", b"edge", b"wrap")


@pytest.mark.parametrize("name", ALL)
def test_topk_is_sorted_with_a_small_constant_k(graphs: dict, name: str) -> None:
    model = graphs[name]
    values = constants(model)
    for node in nodes(model, "TopK"):
        k = values[node.input[1]]
        assert k.size == 1 and 1 <= int(k.reshape(-1)[0]) <= TOPK_MAX_K, f"{node.name}: K = {k}"
        assert attrs(node).get("sorted", 1) == 1, f"{node.name}: TensorRT 10 needs sorted=1"


# ---------------------------------------------------------------- the end-to-end (NMS) graph


def test_nms_graph_has_one_nonmaxsuppression_with_constant_settings(graphs: dict) -> None:
    model = graphs["fp32_nms_dynamic"]
    values = constants(model)
    (nms,) = nodes(model, "NonMaxSuppression")
    assert attrs(nms).get("center_point_box", 0) == 0  # (x1, y1, x2, y2): TensorRT's CORNER_PAIRS
    max_per_class, iou, score = (values[nms.input[i]].reshape(-1) for i in (2, 3, 4))
    assert max_per_class.size == iou.size == score.size == 1
    assert int(max_per_class[0]) == MAX_DET
    assert 0.0 <= float(iou[0]) <= 1.0  # TensorRT NMS operator: "IoUThreshold ... in range [0.0f, 1.0f]"
    assert 0.0 <= float(score[0]) <= 1.0
    assert len(nodes(model, "TopK")) == 2  # pre-NMS candidates, then the max_det best


def test_nms_graph_is_dynamic_in_batch_height_and_width(graphs: dict) -> None:
    (images,) = graphs["fp32_nms_dynamic"].graph.input
    dims = images.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"] and dims[1].dim_value == 3


# ---------------------------------------------------------------- FP16 (strongly typed: the graph's types rule)


def test_fp16_graph_is_float32_outside_and_float16_in_the_body(graphs: dict) -> None:
    model = graphs["fp16"]
    values = constants(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    half = [n.name for n in convs if values[n.input[1]].dtype == np.float16]
    full = [n.name for n in convs if values[n.input[1]].dtype == np.float32]
    assert len(half) + len(full) == len(convs)
    assert half and all(not n.startswith("/heads/") for n in half), "backbone/neck convolutions are not FP16"
    assert full and all(n.startswith("/heads/") for n in full), "head convolutions are not FP32"
    casts = {attrs(n)["to"] for n in nodes(model, "Cast")}
    assert {TensorProto.FLOAT16, TensorProto.FLOAT} <= casts  # the explicit casts at both ends of the body


# ---------------------------------------------------------------- INT8 (explicit quantization, Q/DQ)


def test_int8_qdq_is_symmetric_int8_with_positive_scales(graphs: dict) -> None:
    """onnxOpImporters.cpp QuantDequantLinearHelper: "Non-zero zero point is not supported", "Scale
    coefficients must all be positive", UINT8 only on DLA; operators.md: y_zero_point / x_zero_point must be 0."""
    model = graphs["int8"]
    values = constants(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(nodes(model, "QuantizeLinear")) > 50
    for node in qdq:
        scale = values[node.input[1]]
        assert scale.dtype == np.float32 and scale.size and (scale > 0).all(), f"{node.name}: scale {scale}"
        assert len(node.input) > 2 and node.input[2], f"{node.name}: no zero point (ONNX default is UINT8)"
        zero = values[node.input[2]]
        assert zero.shape == scale.shape and not zero.any(), f"{node.name}: non-zero zero point"
        if node.op_type == "QuantizeLinear":
            assert zero.dtype == np.int8, f"{node.name}: quantizes to {zero.dtype}, TensorRT takes INT8"


def test_int8_per_channel_weights_have_one_scale_per_output_channel(graphs: dict) -> None:
    """QuantDequantLinearHelper: "The number of scales is not equal to the number of output channels"."""
    model = graphs["int8"]
    values = constants(model)
    weight_dq = {n.output[0]: n for n in nodes(model, "DequantizeLinear")}
    kept_float = set(float_tail(model))  # the DFL projection of the float tail (formats.int8)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    for node in convs:
        dq = weight_dq.get(node.input[1])
        assert (dq is None) == (node.name in kept_float), node.name
        if dq is None:
            continue
        weight, scale = values[dq.input[0]], values[dq.input[1]]
        axis = attrs(dq).get("axis", 1)
        assert axis == (0 if node.op_type == "Conv" else 1), f"{node.name}: axis {axis} is not the output channels"
        assert weight.dtype == np.int8 and scale.ndim == 1 and scale.size == weight.shape[axis], node.name
    assert len(convs) - len(kept_float & {n.name for n in convs}) >= 100


def test_int8_dequantize_inputs_are_int8(graphs: dict) -> None:
    """operators.md 10.x DequantizeLinear: INT8/FP8/INT4/FP4 inputs; biases stay float (export.int8)."""
    model = graphs["int8"]
    values = constants(model)
    q_outputs = {n.output[0] for n in nodes(model, "QuantizeLinear")}
    for node in nodes(model, "DequantizeLinear"):
        x = node.input[0]
        assert x in q_outputs or values[x].dtype == np.int8, f"{node.name}: dequantizes {values[x].dtype}"


def test_int8_quantizes_only_image_dependent_values(graphs: dict) -> None:
    """The anchor grid and strides are not quantized (INT8 moved anchors by up to 16 px at 640)."""
    model = graphs["int8"]
    live = {i.name for i in model.graph.input}
    for node in model.graph.node:  # topological order; Shape carries shapes, not values
        if node.op_type != "Shape" and any(i in live for i in node.input):
            live.update(node.output)
    fixed = [n.input[0] for n in nodes(model, "QuantizeLinear") if n.input[0] not in live]
    assert not fixed, f"quantized tensors that do not depend on the image: {fixed[:5]}"
