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

from yolonas_cli.core.errors import UsageError, WeightsError
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


def outputs_to_raw(
    outputs: Sequence[np.ndarray], end2end: bool, where: str = "the exported model", num_classes: int | None = None
) -> Any:
    """Runtime output arrays -> what the engine expects: (boxes, scores) tensors, or per-image detections.

    WeightsError naming `where` when the arrays are not what a YOLO-NAS export gives (see `outputs_problem`)."""
    check_outputs([np.shape(o) for o in outputs], end2end, where, num_classes)
    tensors = [torch.from_numpy(np.ascontiguousarray(o)) for o in outputs]
    if end2end:
        return detections_from_end2end(*tensors)
    return tensors[0].float(), tensors[1].float()


def outputs_problem(shapes: Sequence[tuple[int, ...]], end2end: bool, num_classes: int | None = None) -> str | None:
    """Why outputs of these shapes are not a YOLO-NAS export's (None when they are): boxes [B, N, 4] and scores
    [B, N, C] (C = `num_classes` when given), or num_dets [B, 1], det_boxes [B, K, 4], det_scores and
    det_classes [B, K]."""
    shapes = [tuple(s) for s in shapes]
    if end2end:
        good = len(shapes) == 4 and len(shapes[0]) == 2 and len(shapes[1]) == 3 and shapes[1][2:] == (4,)
        good = good and shapes[2] == shapes[3] == shapes[1][:2] and shapes[0][0] == shapes[1][0]
        return None if good else f"outputs of shapes {shapes[:4]}, not num_dets, det_boxes, det_scores, det_classes"
    if len(shapes) != 2 or len(shapes[0]) != 3 or shapes[0][2:] != (4,):
        return f"outputs of shapes {shapes[:4]}, not boxes [B, N, 4] and scores [B, N, C]"
    classes = (num_classes,) if num_classes is not None else shapes[1][2:]
    if shapes[1] != (*shapes[0][:2], *classes):
        return f"scores of shape {shapes[1]} for boxes of shape {shapes[0]} (expected [B, N, {classes[0]}])"
    return None


def check_outputs(shapes: Sequence[tuple[int, ...]], end2end: bool, where: str, num_classes: int | None = None) -> None:
    """WeightsError naming `where` when `outputs_problem` finds one."""
    problem = outputs_problem(shapes, end2end, num_classes)
    if problem is not None:
        raise WeightsError(f"'{where}' is not a YOLO-NAS export: it gives {problem}; export the model again")
