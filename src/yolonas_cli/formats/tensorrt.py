"""The TensorRT backend: a `.engine` from `yolo-nas export format=engine`, on the CUDA device it was built for.

Inputs and outputs live in torch CUDA tensors (no extra CUDA Python package is needed): the input is
copied to the GPU once, the engine runs on torch's current stream, outputs stay on the GPU for the NMS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core.errors import MissingExtraError, UsageError
from yolonas_cli.formats.metadata import INPUT_NAME
from yolonas_cli.formats.registry import check_input
from yolonas_cli.formats.tensorrt_export import read_engine_file

MIN_TENSORRT = 10  # strongly typed networks, INT64 tensors, the name-based tensor API


def load_tensorrt() -> Any:
    """`import tensorrt` (version 10 or newer), or MissingExtraError with the pip hint."""
    try:
        import tensorrt
    except ImportError:
        raise MissingExtraError(
            "tensorrt is not installed (needed for .engine models): pip install 'yolo-nas[tensorrt]'"
        ) from None
    check_tensorrt_version(tensorrt.__version__)
    return tensorrt


def check_tensorrt_version(version: str) -> None:
    """MissingExtraError unless `version` is TensorRT 10 or newer."""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TENSORRT:
        raise MissingExtraError(
            f"TensorRT {version} is installed; yolo-nas needs TensorRT {MIN_TENSORRT} or "
            "newer for .engine models: pip install -U 'yolo-nas[tensorrt]'"
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
    """A deserialized TensorRT engine with one execution context (see `backends.base.Backend`)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: torch.device = torch.device("cuda:0")):
        trt = load_tensorrt()
        if device.type != "cuda":
            raise MissingExtraError(f"TensorRT engines run on an NVIDIA GPU; device={device} is not one (use device=0)")
        self.trt, self.path, self.device = trt, Path(path), device
        self.metadata, engine_bytes = read_engine_file(self.path)
        self.end2end = self.metadata.nms
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
        """float32 [B,3,H,W] RGB 0-1 -> (boxes, scores) CUDA tensors, or per-image detections when end2end."""
        from yolonas_cli.formats.wrappers import detections_from_end2end

        check_input(images, self.fixed_input, self.path.name)
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        outputs = [torch.cat(parts) for parts in zip(*self._chunks(batch))]
        if self.end2end:
            return detections_from_end2end(*outputs)
        return outputs[0].float(), outputs[1].float()

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)
