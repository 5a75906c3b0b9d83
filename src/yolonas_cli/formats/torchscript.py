"""format=torchscript: the export (a traced `DecodedModel`, the metadata as the extra file `metadata.json`) and
the backend that runs it on any torch device.

The trace records shapes symbolically (sizes are read from the tensors), so one file runs at any batch
and any multiple-of-32 size; `dynamic=False` only makes the loader enforce the export size. NMS is not
offered in TorchScript (data-dependent loops do not trace); the backend's outputs go through the engine's
NMS, as the PyTorch model's do.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from yolonas_cli.core.errors import WeightsError, one_line
from yolonas_cli.core.files import atomic_file
from yolonas_cli.engine.backend import GraphNMS, check_input, check_outputs
from yolonas_cli.formats.job import ExportJob
from yolonas_cli.formats.metadata import ExportMetadata, metadata_from_json, metadata_json
from yolonas_cli.formats.pytorch import no_tf32

METADATA_FILE = "metadata.json"


def export(job: ExportJob) -> Path:
    """format=torchscript: trace, embed the metadata, save atomically."""
    module = job.module(nms=False)
    with warnings.catch_warnings(), torch.no_grad(), atomic_file(job.output) as temp:
        warnings.simplefilter("ignore")  # torch.jit deprecation and tracer warnings
        traced = torch.jit.trace(module, job.sample(), check_trace=False)
        torch.jit.save(traced, str(temp), _extra_files={METADATA_FILE: metadata_json(job.meta)})
    return job.output


def read_metadata(path: Path) -> ExportMetadata:
    """The `extra/metadata.json` entry of the TorchScript zip archive (the model is not loaded)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)
            if name is None:
                raise WeightsError(f"'{path}' was not exported by yolo-nas (no {METADATA_FILE} in it)")
            return metadata_from_json(archive.read(name), str(path))
    except zipfile.BadZipFile:
        raise WeightsError(f"'{path}' is not a TorchScript file") from None


def open_backend(path: Path, device: torch.device) -> TorchScriptBackend:
    """The traced module of an exported file on `device`."""
    return TorchScriptBackend(path, device)


class TorchScriptBackend:
    """A `torch.jit` module with its metadata (see `engine.backend.Backend`)."""

    name = "torchscript"
    graph_nms: GraphNMS | None = None  # TorchScript exports never hold NMS

    def __init__(self, path: str | Path, device: torch.device = torch.device("cpu")):
        self.path = Path(path)
        extra = {METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation
            try:
                self.module = torch.jit.load(str(self.path), map_location=device, _extra_files=extra).eval()
            except RuntimeError as exc:
                reason = one_line(str(exc))[:200]
                raise WeightsError(f"torch cannot load the TorchScript file '{self.path}' ({reason})") from None
        if device.type == "cpu":  # as TorchBackend: NHWC convolutions are about 2x faster on a CPU
            self.module = self.module.to(memory_format=torch.channels_last)
        self.metadata = metadata_from_json(extra[METADATA_FILE], str(self.path))
        self.device = device
        self.fixed_input = None if self.metadata.dynamic else self.metadata.imgsz

    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 [B,3,H,W] RGB 0-1 -> (boxes [B,N,4], scores [B,N,C]) float32 on `device` (FP32 without
        TF32 on CUDA, as the torch backend)."""
        check_input(images, self.fixed_input, self.path.name)
        with torch.inference_mode(), no_tf32():
            batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
            outputs = self.module(batch)
        tensors = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else () for t in tensors]
        check_outputs(shapes, False, str(self.path), len(self.metadata.names))
        boxes, scores = tensors
        return boxes.float(), scores.float()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
