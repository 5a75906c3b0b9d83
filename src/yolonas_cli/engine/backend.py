"""The backend interface every runtime implements (PyTorch here; exported formats in their own files)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class Backend(Protocol):
    """Runs the network: float32 RGB [B,3,H,W] in [0,1] -> (boxes [B,N,4] xyxy input pixels, scores [B,N,C])."""

    name: str  # e.g. "torch", "onnxruntime"
    device: torch.device
    fixed_input: tuple[int, int] | None  # (H, W) a static exported model requires, else None

    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]: ...

    def synchronize(self) -> None:
        """Wait for queued device work (so that timings are real)."""
        ...
