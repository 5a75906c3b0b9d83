"""The OpenVINO backend: an IR folder (or its .xml) from `yolo-nas export format=openvino`, on the CPU.

Models are compiled with the f32 inference precision hint: OpenVINO's CPU plugin otherwise runs the float
layers in bfloat16 on CPUs that have it, which moves boxes by whole pixels (FP16 exports keep FP16-rounded
weights; INT8 ones run their quantized layers in INT8 either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, WeightsError
from yolonas_cli.formats.openvino_export import read_rt_info
from yolonas_cli.formats.registry import check_input, outputs_to_raw, run_in_batches


def load_openvino() -> Any:
    """`import openvino`, or MissingExtraError with the pip hint."""
    try:
        import openvino
    except ImportError:
        raise MissingExtraError(
            "openvino is not installed (needed to run OpenVINO models): pip install 'yolo-nas[openvino]'"
        ) from None
    return openvino


def find_xml(path: Path) -> Path:
    """The .xml of an IR folder (or the path itself when it is the .xml)."""
    if path.is_file():
        return path
    found = sorted(path.glob("*.xml"))
    if len(found) != 1:
        raise WeightsError(f"'{path}' should hold exactly one OpenVINO .xml model, found {len(found)}")
    return found[0]


def _dims(partial_shape: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


class OpenVinoBackend:
    """A compiled OpenVINO model (see `backends.base.Backend`)."""

    name = "openvino"

    def __init__(self, path: str | Path, device: torch.device = torch.device("cpu")):
        ov = load_openvino()
        self.path = Path(path)
        if device.type != "cpu":
            console.warn(f"OpenVINO runs on the CPU here; device={device} is not used")
        core = ov.Core()
        model = core.read_model(str(find_xml(self.path)))
        self.metadata = read_rt_info(model, str(self.path))
        self.end2end = self.metadata.nms
        self.device = torch.device("cpu")
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        dims = _dims(model.inputs[0].partial_shape)
        self.fixed_batch = dims[0]
        self.fixed_input = (dims[2], dims[3]) if dims[2] and dims[3] else None
        self.outputs = [self._output(name) for name in self.metadata.output_names]

    def _output(self, name: str) -> Any:
        for port in self.compiled.outputs:
            if name in port.names:
                return port
        raise WeightsError(f"'{self.path}' has no output named '{name}'")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """One inference on exactly the model's batch: the outputs in metadata order."""
        results = self.compiled([images])
        return [results[port] for port in self.outputs]

    def __call__(self, images: np.ndarray) -> Any:
        """float32 [B,3,H,W] RGB 0-1 -> (boxes, scores) tensors, or per-image detections when end2end."""
        check_input(images, self.fixed_input, self.path.name)
        images = np.ascontiguousarray(images, dtype=np.float32)
        return outputs_to_raw(run_in_batches(self.run, images, self.fixed_batch), self.end2end)

    def synchronize(self) -> None:
        """Inference calls are synchronous."""
