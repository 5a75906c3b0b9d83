"""format=engine: the export (ONNX -> TensorRT engine `<stem>.engine`, built on the CUDA GPU that will run it)
and the backend that runs it there.

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

The backend keeps inputs and outputs in torch CUDA tensors (no extra CUDA Python package is needed): the input
is copied to the GPU once, the engine runs on torch's current stream, outputs stay on the GPU for the NMS.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError, WeightsError
from yolonas_cli.core.files import atomic_file
from yolonas_cli.core.install import pip_extra
from yolonas_cli.engine.backend import check_input
from yolonas_cli.engine.postprocess import detections_from_end2end
from yolonas_cli.formats.calibration import calibration_for
from yolonas_cli.formats.int8 import finish_int8, quantize_onnx
from yolonas_cli.formats.job import ExportJob
from yolonas_cli.formats.metadata import INPUT_NAME, ExportMetadata, metadata_from_json, metadata_json
from yolonas_cli.formats.onnx_graph import build_onnx

MIN_TENSORRT = 10  # strongly typed networks, INT64 tensors, the name-based tensor API


def load_tensorrt() -> Any:
    """`import tensorrt` (version 10 or newer), or MissingExtraError with the pip hint."""
    try:
        import tensorrt
    except ImportError:
        raise MissingExtraError(
            f"tensorrt is not installed (needed for .engine models): {pip_extra('tensorrt')}"
        ) from None
    check_tensorrt_version(tensorrt.__version__)
    return tensorrt


def check_tensorrt_version(version: str) -> None:
    """MissingExtraError unless `version` is TensorRT 10 or newer."""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TENSORRT:
        raise MissingExtraError(
            f"TensorRT {version} is installed; yolo-nas needs TensorRT {MIN_TENSORRT} or "
            f"newer for .engine models: {pip_extra('tensorrt').replace('pip install', 'pip install -U', 1)}"
        )


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
        trt.bool: torch.bool,
        trt.int8: torch.int8,
    }
    return table[dtype]


class TensorRTBackend:
    """A deserialized TensorRT engine with one execution context (see `engine.backend.Backend`)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: torch.device = torch.device("cuda:0")):
        trt = load_tensorrt()
        if device.type != "cuda":
            raise MissingExtraError(f"TensorRT engines run on an NVIDIA GPU; device={device} is not one (use device=0)")
        self.trt, self.path, self.device = trt, Path(path), device
        self.metadata, engine_bytes = read_engine_file(self.path)
        self.graph_nms = self.metadata.graph_nms
        with torch.cuda.device(device):
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
            self.context = self.engine.create_execution_context()
        shape = tuple(self.engine.get_tensor_shape(INPUT_NAME))
        self.max_batch = self.metadata.batch
        self.fixed_batch = shape[0] if shape[0] > 0 else None
        self.fixed_input = (shape[2], shape[3]) if min(shape[2:]) > 0 else None
        self.output_names = list(self.metadata.output_names)

    def run(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """One execution on a CUDA float32 batch the engine accepts; outputs as CUDA tensors."""
        with torch.cuda.device(self.device):
            return self._run(batch)

    def _run(self, batch: torch.Tensor) -> list[torch.Tensor]:
        if not self.context.set_input_shape(INPUT_NAME, tuple(batch.shape)):
            h, w = self.metadata.imgsz
            raise UsageError(
                f"{self.path.name}: an input of shape {tuple(batch.shape)} is outside the engine's "
                f"range (batch 1 to {self.max_batch}, sides 32 to {h}x{w}); "
                "export it again with a larger imgsz or batch"
            )
        self.context.set_tensor_address(INPUT_NAME, batch.data_ptr())
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(
                shape, dtype=_torch_dtype(self.trt, self.engine.get_tensor_dtype(name)), device=self.device
            )
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {self.path.name}")
        return outputs

    def _chunks(self, images: torch.Tensor) -> list[list[torch.Tensor]]:
        step = self.fixed_batch or self.max_batch
        parts = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            count = len(chunk)
            if self.fixed_batch and count < self.fixed_batch:
                pad = chunk.new_zeros((self.fixed_batch - count, *chunk.shape[1:]))
                chunk = torch.cat([chunk, pad])
            parts.append([o[:count] for o in self.run(chunk.contiguous())])
        return parts

    def __call__(self, images: np.ndarray) -> Any:
        """float32 [B,3,H,W] RGB 0-1 -> (boxes, scores) CUDA tensors, or per-image detections (graph NMS)."""
        check_input(images, self.fixed_input, self.path.name)
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        outputs = [torch.cat(parts) for parts in zip(*self._chunks(batch))]
        if self.graph_nms is not None:
            return detections_from_end2end(*outputs)
        return outputs[0].float(), outputs[1].float()

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


# ---------------------------------------------------------------- export

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
    if job.options.dynamic:
        h, w = job.imgsz
        profile = builder.create_optimization_profile()
        profile.set_shape(
            INPUT_NAME, (1, 3, MIN_SIDE, MIN_SIDE), (job.options.batch, 3, h, w), (job.options.batch, 3, h, w)
        )
        config.add_optimization_profile(profile)
    return config


def build_engine(onnx_path: Path, job: ExportJob) -> bytes:
    """Serialized engine of `onnx_path` for the current CUDA device."""
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
    simplify = job.options.simplify
    if not job.options.int8:
        return build_onnx(job, scratch / "model.onnx", simplify=simplify)
    _, calib = calibration_for(job.options.data, job.options.fraction, job.imgsz, "ONNX Runtime (QDQ for TensorRT)")
    fp32 = build_onnx(job, scratch / "fp32.onnx", half=False, simplify=simplify, precision="fp32")
    int8 = scratch / "int8.onnx"
    quantize_onnx(fp32, int8, calib, job.options.batch, symmetric=True)
    finish_int8(int8, job)
    return int8


def export(job: ExportJob) -> Path:
    """format=engine: ONNX graph -> TensorRT engine with the metadata header, written atomically."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = build_engine(onnx_for_engine(job, Path(scratch)), job)
    with atomic_file(job.output) as temp:
        write_engine_file(temp, job.meta, engine)
    return job.output


def check_version() -> None:
    """MissingExtraError unless the installed TensorRT is 10 or newer (before an export starts)."""
    load_tensorrt()


def read_metadata(path: Path) -> ExportMetadata:
    """The metadata header of an engine file (TensorRT is not needed)."""
    return read_engine_header(path)


def open_backend(path: Path, device: torch.device) -> TensorRTBackend:
    """The deserialized engine of an exported file on the CUDA `device`."""
    return TensorRTBackend(path, device)
