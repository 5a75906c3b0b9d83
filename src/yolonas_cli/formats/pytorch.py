"""The PyTorch backend: the (fused) YOLO-NAS module on a CPU, CUDA or MPS device, FP32 or FP16.

FP32 on CUDA means FP32: cuDNN's TF32 convolutions (PyTorch's default on Ampere and newer) move boxes by
tenths of a pixel, so they are switched off for our calls only (`half=True` is the fast path)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from yolonas_cli.engine.backend import GraphNMS
from yolonas_cli.engine.threads import cap_torch_threads


def no_tf32() -> Any:
    """Context: cuDNN convolutions in true FP32 (no TF32) for the calls inside it."""
    return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False)


class TorchBackend:
    """Wraps an eval-mode module. Input: numpy float32 [B,3,H,W]; output tensors as the model returns them."""

    name = "torch"
    fixed_input: tuple[int, int] | None = None
    graph_nms: GraphNMS | None = None  # decoded outputs: NMS runs in the engine

    def __init__(self, model: nn.Module, device: torch.device, half: bool = False):
        self.device = device
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.eval().to(device=device, dtype=self.dtype)
        if device.type == "cpu":  # oneDNN's NHWC convolutions: YOLO-NAS S at 640 runs about 1.6x faster
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            cap_torch_threads()

    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), no_tf32():
            batch = torch.from_numpy(images).to(self.device, non_blocking=True).to(self.dtype)
            boxes, scores = self.model(batch)
        return boxes, scores

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
