"""The TorchScript backend: a traced model from `yolo-nas export format=torchscript`, on any torch device."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from yolonas_cli.formats.metadata import metadata_from_json
from yolonas_cli.formats.pytorch import no_tf32
from yolonas_cli.formats.registry import check_input
from yolonas_cli.formats.torchscript_export import METADATA_FILE


class TorchScriptBackend:
    """A `torch.jit` module with its metadata (see `backends.base.Backend`)."""

    name = "torchscript"
    end2end = False

    def __init__(self, path: str | Path, device: torch.device = torch.device("cpu")):
        self.path = Path(path)
        extra = {METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation
            self.module = torch.jit.load(str(self.path), map_location=device, _extra_files=extra).eval()
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
            boxes, scores = self.module(batch)
        return boxes.float(), scores.float()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
