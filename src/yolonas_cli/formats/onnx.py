"""The ONNX Runtime backend: runs `*.onnx` files written by `yolo-nas export` on the CPU or a CUDA GPU.

The metadata comes from the session (`custom_metadata_map`), so the `onnx` package is not needed here.
Static exports get a fixed input size (and batch: other batch sizes are split and padded); dynamic ones
take any size that is a multiple of 32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core.errors import MissingExtraError
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.registry import check_input, outputs_to_raw, run_in_batches


def load_onnxruntime() -> Any:
    """`import onnxruntime`, or MissingExtraError with the pip hint."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError(
            "onnxruntime is not installed (needed to run .onnx models): pip install 'yolo-nas[onnx]'"
        ) from None
    return onnxruntime


def providers_for(ort: Any, device: torch.device) -> list[Any]:
    """Execution providers for `device`: CUDA (with CPU fallback) for a CUDA device, else the CPU."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise MissingExtraError(
            f"device={device} needs onnxruntime with CUDA, and this onnxruntime has only "
            f"{', '.join(ort.get_available_providers())}: pip install onnxruntime-gpu "
            "(or use device=cpu)"
        )
    options: dict[str, Any] = {"device_id": device.index or 0}
    if _version(ort.__version__) >= (1, 18):  # FP32 means FP32: no TF32 convolutions (on by default)
        options["use_tf32"] = 0
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "1.32.0" or "1.18.0+cu12"; (0, 0) when unreadable."""
    parts = text.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def fixed_dims(shape: list[Any]) -> tuple[int | None, tuple[int, int] | None]:
    """(batch, (H, W)) of an input shape; None for the dynamic parts."""
    batch = shape[0] if isinstance(shape[0], int) else None
    hw = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:4]) else None
    return batch, hw


class OnnxRuntimeBackend:
    """An exported ONNX model in an ONNX Runtime session (see `backends.base.Backend`)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device = torch.device("cpu"), threads: int = 0):
        ort = load_onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = threads
        # No busy-waiting between runs: spinning workers starve the pre- and postprocessing around them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers_for(ort, device))
        meta_map = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = ExportMetadata.from_pairs(meta_map, str(self.path))
        self.end2end = self.metadata.nms
        self.device = torch.device("cpu")  # outputs come back as host arrays
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.fixed_batch, self.fixed_input = fixed_dims(self.session.get_inputs()[0].shape)

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """One session run on exactly the model's batch: the raw output arrays, in output order."""
        return self.session.run(self.output_names, {self.input_name: images})

    def __call__(self, images: np.ndarray) -> Any:
        """float32 [B,3,H,W] RGB 0-1 -> (boxes, scores) tensors, or per-image detections when end2end."""
        check_input(images, self.fixed_input, self.path.name)
        images = np.ascontiguousarray(images, dtype=np.float32)
        return outputs_to_raw(run_in_batches(self.run, images, self.fixed_batch), self.end2end)

    def synchronize(self) -> None:
        """Session runs are synchronous."""
