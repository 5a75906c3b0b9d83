"""ONNX -> TensorRT engine (`<stem>.engine`), built on the CUDA GPU that will run it.

Needs TensorRT 10 or newer. Precision comes from the ONNX graph's own types ("strongly typed" network, the
recommended mode of TensorRT 10 and the only one of 11): FP32 from the FP32 graph; `half=True` from the FP16
graph (backbone and neck in FP16, heads and decoding in FP32, see `export.wrappers`); `int8=True` from a QDQ
graph quantized with symmetric INT8 activations (the only kind TensorRT takes) on the calibration images,
biases, decoding and NMS in float (see `export.int8`). No FP16/INT8 builder flags: with them (TensorRT 8's
weakly typed networks) TensorRT may run the FP32 box decoding in FP16.

FP32 engines are built without TF32 (on by default in TensorRT for Ampere and newer GPUs).
`dynamic=True` builds one optimization profile: batch 1..`batch`, H and W from 32 up to `imgsz`.

File layout: b"YNAS" magic, uint32 little-endian length, that many bytes of metadata JSON, then the
serialized engine (so that the metadata travels inside the one file, as with the other formats).
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolonas_cli.core import console
from yolonas_cli.core.errors import WeightsError
from yolonas_cli.core.files import atomic_file
from yolonas_cli.formats.metadata import INPUT_NAME, ExportMetadata, metadata_json

if TYPE_CHECKING:
    from yolonas_cli.modes.export import ExportJob

MAGIC = b"YNAS"
WORKSPACE_BYTES = 4 << 30
MIN_SIDE = 32


def write_engine_file(path: Path, meta: ExportMetadata, engine: bytes) -> None:
    """Header (magic, length, metadata JSON) then the engine bytes."""
    header = metadata_json(meta).encode("utf-8")
    with path.open("wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + header)
        f.write(engine)


def read_engine_header(path: Path) -> ExportMetadata:
    """Only the metadata of an engine file (reads the header, not the engine)."""
    from yolonas_cli.formats.metadata import metadata_from_json

    with path.open("rb") as f:
        start = f.read(8)
        if start[:4] != MAGIC or len(start) < 8:
            raise WeightsError(
                f"'{path}' is not a yolo-nas TensorRT engine (no yolo-nas header): export it with "
                "`yolo-nas export format=engine`"
            )
        (length,) = struct.unpack("<I", start[4:8])
        return metadata_from_json(f.read(length), str(path))


def read_engine_file(path: Path) -> tuple[ExportMetadata, bytes]:
    """(metadata, engine bytes) of a file written by `write_engine_file`."""
    meta = read_engine_header(path)
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[4:8])
    return meta, data[8 + length :]


def parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    """A strongly typed TensorRT network from the ONNX file; RuntimeError listing the parser's errors."""
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse the ONNX graph: {errors}")
    return network


def build_config(trt: Any, builder: Any, job: ExportJob) -> Any:
    """Builder config: workspace, no TF32 for FP32 engines, the dynamic profile."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if job.meta.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: no 10-bit-mantissa TF32 convolutions
    if job.args.dynamic:
        h, w = job.imgsz
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, 3, MIN_SIDE, MIN_SIDE), (job.args.batch, 3, h, w), (job.args.batch, 3, h, w))
        config.add_optimization_profile(profile)
    return config


def build_engine(onnx_path: Path, job: ExportJob) -> bytes:
    """Serialized engine of `onnx_path` for the current CUDA device."""
    from yolonas_cli.formats.tensorrt import load_tensorrt

    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = parse_onnx(trt, builder, logger, onnx_path)
    console.info(f"TensorRT {trt.__version__}: building the engine (this takes a minute or more)")
    serialized = builder.build_serialized_network(network, build_config(trt, builder, job))
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine (see its messages above)")
    return bytes(serialized)


def onnx_for_engine(job: ExportJob, scratch: Path) -> Path:
    """The ONNX graph the engine is built from: FP32, FP16-body, or symmetric-INT8 QDQ."""
    from yolonas_cli.formats.onnx_graph import build_onnx

    simplify = job.args.simplify
    if not job.args.int8:
        return build_onnx(job, scratch / "model.onnx", simplify=simplify)
    from yolonas_cli.formats.calibration import calibration_for
    from yolonas_cli.formats.int8 import finish_int8, quantize_onnx

    _, calib = calibration_for(job.args.data, job.args.fraction, job.imgsz, "ONNX Runtime (QDQ for TensorRT)")
    fp32 = build_onnx(job, scratch / "fp32.onnx", half=False, simplify=simplify, precision="fp32")
    int8 = scratch / "int8.onnx"
    quantize_onnx(fp32, int8, calib, job.args.batch, symmetric=True)
    finish_int8(int8, job)
    return int8


def export(job: ExportJob) -> Path:
    """format=engine: ONNX graph -> TensorRT engine with the metadata header, written atomically."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = build_engine(onnx_for_engine(job, Path(scratch)), job)
    with atomic_file(job.output) as temp:
        write_engine_file(temp, job.meta, engine)
    return job.output
