"""format=onnx: the export (`export`: FP32, FP16, or INT8 QDQ with its cost report) and the ONNX Runtime
backend that runs `*.onnx` files written by `yolo-nas export` on the CPU or a CUDA GPU.

The backend reads the metadata from the session (`custom_metadata_map`), so the `onnx` package is not needed
to run a file. Static exports get a fixed input size (and batch: other batch sizes are split and padded);
dynamic ones take any size that is a multiple of 32.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core import console
from yolonas_cli.core.cpus import cpu_budget
from yolonas_cli.core.errors import MissingExtraError, WeightsError, one_line
from yolonas_cli.core.files import atomic_file
from yolonas_cli.core.install import pip_extra
from yolonas_cli.engine.backend import check_input, outputs_to_raw, run_in_batches
from yolonas_cli.formats.calibration import calibration_for
from yolonas_cli.formats.int8 import finish_int8, measure_cost, quantize_onnx
from yolonas_cli.formats.job import ExportJob
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.onnx_graph import build_onnx


def load_onnxruntime() -> Any:
    """`import onnxruntime`, or MissingExtraError with the pip hint."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError(
            f"onnxruntime is not installed (needed to run .onnx models): {pip_extra('onnx')}"
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
    """An exported ONNX model in an ONNX Runtime session (see `engine.backend.Backend`)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device = torch.device("cpu"), threads: int | None = None):
        ort = load_onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = threads or cpu_budget()  # the CPUs this process may use (core.cpus)
        # No busy-waiting between runs: spinning workers starve the pre- and postprocessing around them, and
        # any other process on the same CPUs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = _session(ort, self.path, options, providers_for(ort, device))
        meta_map = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = ExportMetadata.from_pairs(meta_map, str(self.path))
        inputs = [tuple(i.shape) for i in self.session.get_inputs()]
        problem = self.metadata.signature_problem(inputs, {o.name: tuple(o.shape) for o in self.session.get_outputs()})
        if problem is not None:
            raise WeightsError(f"'{self.path}' carries yolo-nas metadata but is not a YOLO-NAS export: {problem}")
        self.graph_nms = self.metadata.graph_nms
        self.device = torch.device("cpu")  # outputs come back as host arrays
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.fixed_batch, self.fixed_input = fixed_dims(self.session.get_inputs()[0].shape)

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """One session run on exactly the model's batch: the raw output arrays, in output order."""
        return self.session.run(self.output_names, {self.input_name: images})

    def __call__(self, images: np.ndarray) -> Any:
        """float32 [B,3,H,W] RGB 0-1 -> (boxes, scores) tensors, or per-image detections (graph NMS)."""
        check_input(images, self.fixed_input, self.path.name)
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs = run_in_batches(self.run, images, self.fixed_batch)
        return outputs_to_raw(outputs, self.graph_nms is not None, str(self.path), len(self.metadata.names))

    def synchronize(self) -> None:
        """Session runs are synchronous."""


def _session(ort: Any, path: Path, options: Any, providers: list[Any]) -> Any:
    """An ONNX Runtime session of `path`, after checking where its external data lies (when `onnx` is
    installed; ONNX Runtime checks that too); any failure to load is one WeightsError naming the file."""
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        from yolonas_cli.formats.onnx_graph import external_data_problem

        problem = external_data_problem(path)
        if problem is not None:
            raise WeightsError(f"refusing to load '{path}': {problem}; export the model again")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's Fail, InvalidGraph, InvalidProtobuf, NoSuchFile, ...
        reason = one_line(str(exc))
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise WeightsError(f"ONNX Runtime cannot load '{path}': {reason}") from None


def open_backend(path: Path, device: torch.device) -> OnnxRuntimeBackend:
    """The ONNX Runtime session of an exported file on `device`."""
    return OnnxRuntimeBackend(path, device)


def read_metadata(path: Path) -> ExportMetadata:
    """ONNX metadata_props through `onnx` when installed (the header only), else through a CPU session."""
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        from yolonas_cli.formats.onnx_graph import read_metadata as read_onnx_metadata

        return read_onnx_metadata(path)
    return OnnxRuntimeBackend(path, torch.device("cpu")).metadata


# ---------------------------------------------------------------- export


def export(job: ExportJob) -> Path:
    """format=onnx: FP32 or FP16 graph; int8=True quantizes it (see `export_int8`)."""
    if job.options.int8:
        return export_int8(job)
    with atomic_file(job.output) as temp:
        build_onnx(job, temp)
    return job.output


def export_int8(job: ExportJob) -> Path:
    """FP32 graph -> calibrate on `data` -> QDQ INT8 graph at job.output; prints the cost report (see
    `formats.int8`)."""
    o = job.options
    data, calib = calibration_for(o.data, o.fraction, job.imgsz, "ONNX Runtime")
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = build_onnx(job, Path(scratch) / "fp32.onnx", half=False, simplify=False, precision="fp32")
        with atomic_file(job.output) as temp:
            quantize_onnx(fp32, temp, calib, o.batch, symmetric=False)
            finish_int8(temp, job)
            cost = measure_cost(OnnxRuntimeBackend(fp32), OnnxRuntimeBackend(temp), data, job.imgsz)
    for line in cost.lines(f"{data} (val)"):
        console.info(line)
    return job.output
