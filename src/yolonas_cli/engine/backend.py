"""The one interface every runtime implements (`Backend`), and helpers for backends of exported files.

A backend runs the network on a ready batch: float32 RGB `[B,3,H,W]` in [0, 1] (the letterboxed inputs) ->
either the decoded outputs `(boxes [B,N,4] xyxy input pixels, scores [B,N,C])` as tensors, or, for a graph
that ends with NMS (`graph_nms` is not None), one float32 `Tensor[K,6]` (x1, y1, x2, y2, conf, class; input
pixels) per image. The PyTorch backend and the exported formats' backends live in `yolonas_cli.formats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine.postprocess import detections_from_end2end


@dataclass(frozen=True)
class GraphNMS:
    """The NMS settings an exported graph was built with (its outputs are final detections)."""

    conf: float | None
    iou: float | None
    max_det: int | None


class Backend(Protocol):
    """Runs the network on a ready batch (see the module docstring for inputs and outputs)."""

    name: str  # e.g. "torch", "onnxruntime"
    device: torch.device  # where the outputs are
    fixed_input: tuple[int, int] | None  # (H, W) a static exported model requires, else None
    graph_nms: GraphNMS | None  # the graph ends with NMS (None: decoded boxes and scores)

    def __call__(self, images: np.ndarray) -> Any: ...

    def synchronize(self) -> None:
        """Wait for queued device work (so that timings are real)."""
        ...


def run_in_batches(
    run: Callable[[np.ndarray], Sequence[np.ndarray]], images: np.ndarray, batch: int | None
) -> list[np.ndarray]:
    """Run a fixed-batch model on any number of images: chunks of `batch`, the last one padded with zeros;
    outputs (batch-first arrays) concatenated back to len(images). `batch=None`: one call."""
    if batch is None or len(images) == batch:
        return [np.asarray(o) for o in run(images)]
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        count = len(chunk)
        if count < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - count, *chunk.shape[1:]), chunk.dtype)])
        parts.append([np.asarray(o)[:count] for o in run(np.ascontiguousarray(chunk))])
    return [np.concatenate(outputs) for outputs in zip(*parts)]


def check_input(images: np.ndarray, fixed: tuple[int, int] | None, where: str) -> None:
    """UsageError when a static model gets another image size."""
    if fixed is not None and tuple(images.shape[2:]) != tuple(fixed):
        raise UsageError(
            f"{where} was exported for {fixed[0]}x{fixed[1]} inputs, got "
            f"{images.shape[2]}x{images.shape[3]}: export with dynamic=True for other sizes"
        )


def outputs_to_raw(outputs: Sequence[np.ndarray], end2end: bool) -> Any:
    """Runtime output arrays -> what the engine expects: (boxes, scores) tensors, or per-image detections."""
    tensors = [torch.from_numpy(np.ascontiguousarray(o)) for o in outputs]
    if end2end:
        return detections_from_end2end(*tensors)
    return tensors[0].float(), tensors[1].float()
