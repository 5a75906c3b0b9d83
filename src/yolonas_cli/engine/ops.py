"""Box operations: IoU and IoS, greedy NMS (plain and class-aware) and box format conversions.

Box formats (all coordinates in pixels unless the name ends in ``n``):

- ``xyxy``: ``(x1, y1, x2, y2)``, top-left and bottom-right corners; what the model outputs.
- ``xywh``: ``(cx, cy, w, h)``, centre and size (the YOLO label convention).
- ``xywhn``: ``xywh`` divided by the image width (x, w) and height (y, h).
- ``ltwh``: ``(x1, y1, w, h)``, top-left corner and size (the COCO json convention).

NMS follows torchvision's semantics exactly: IoU is computed in the boxes' floating dtype with
``inter / (area_a + area_b - inter)`` and compared with the threshold in float64; a box is suppressed when its
IoU with a kept, higher-scoring box is strictly greater than the threshold; candidates are visited in a stable
descending-score order (equal scores: lower index first), and the kept indices come back in that order.
"""

from __future__ import annotations

from typing import Any, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BOX_FORMATS",
    "batched_nms",
    "box_convert",
    "box_ios",
    "box_iou",
    "clip_boxes",
    "ltwh_to_xyxy",
    "nms",
    "xywh_to_xyxy",
    "xyxy_to_ltwh",
    "xyxy_to_xywh",
    "xyxy_to_xywhn",
]

Boxes = TypeVar("Boxes", Tensor, np.ndarray)
ArrayLike = Union[Tensor, np.ndarray]

BOX_FORMATS = ("xyxy", "xywh", "ltwh")
_NMS_BLOCK = 1024  # rows of the suppression matrix computed at once (bounds memory to ~block * N)


# ---------------------------------------------------------------------------------------------------- IoU


def _area(boxes: Tensor) -> Tensor:
    """Areas of ``boxes`` [N, 4] xyxy -> [N] (negative for inverted boxes, as torchvision)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_iou(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor) -> Tensor:
    """IoU [N, M] of ``a`` [N, 4] and ``b`` [M, 4] (xyxy) given their precomputed areas.

    Same float operations as torchvision's NMS kernel: ``w = max(0, min(x2) - max(x1))``, likewise ``h``,
    ``inter = w * h``, ``iou = inter / (area_a + area_b - inter)``. In-place steps keep temporaries few.
    """
    ax1, ay1, ax2, ay2 = (c[:, None] for c in a.unbind(1))
    bx1, by1, bx2, by2 = (c[None, :] for c in b.unbind(1))
    w = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    h = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0)
    inter = w.mul_(h)
    union = (area_a[:, None] + area_b[None, :]).sub_(inter)
    return inter.div_(union)


def _as_float(boxes: Tensor) -> Tensor:
    return boxes if boxes.is_floating_point() else boxes.float()


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every pair of boxes.

    Args:
        a: ``Tensor[N, 4]`` boxes, xyxy.
        b: ``Tensor[M, 4]`` boxes, xyxy.

    Returns:
        ``Tensor[N, M]`` IoU in the boxes' floating dtype (float32 for integer boxes). A pair whose union is
        zero (two zero-area boxes) gives NaN, as in torchvision; NaN never exceeds an NMS threshold.
    """
    a, b = _as_float(a), _as_float(b)
    return _pairwise_iou(a, _area(a), b, _area(b))


def box_ios(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over the smaller box's area (IoS) of every pair of boxes.

    The match metric of sliced inference: a box cut by a tile border lies mostly inside the whole box, so their
    IoS is near 1 while their IoU may be small. Same intersection arithmetic as :func:`box_iou`.

    Args:
        a: ``Tensor[N, 4]`` boxes, xyxy.
        b: ``Tensor[M, 4]`` boxes, xyxy.

    Returns:
        ``Tensor[N, M]`` IoS in the boxes' floating dtype; NaN where the smaller box has zero area and the
        intersection is empty (never exceeds a threshold).
    """
    a, b = _as_float(a), _as_float(b)
    ax1, ay1, ax2, ay2 = (c[:, None] for c in a.unbind(1))
    bx1, by1, bx2, by2 = (c[None, :] for c in b.unbind(1))
    w = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    h = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0)
    smaller = torch.minimum(_area(a)[:, None], _area(b)[None, :])
    return w.mul_(h).div_(smaller)


# ---------------------------------------------------------------------------------------------------- NMS


def _check_nms_inputs(boxes: Tensor, scores: Tensor, labels: Tensor | None = None) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape [{boxes.shape[0]}], got {tuple(scores.shape)}")
    if labels is not None and labels.shape != boxes.shape[:1]:
        raise ValueError(f"labels must have shape [{boxes.shape[0]}], got {tuple(labels.shape)}")


def _above(ious: Tensor, iou: float) -> Tensor:
    """``ious > iou`` with the float IoU compared against the float64 threshold, as torchvision does.

    For float32 the threshold is replaced by the float32 value ``t`` with ``x > t  <=>  x > iou`` for every
    float32 ``x`` (avoids a float64 copy of the matrix); other dtypes compare in float64.
    """
    if ious.dtype == torch.float32:
        t = np.float32(iou)
        if float(t) > iou:
            t = np.nextafter(t, np.float32(-np.inf))
        return ious > float(t)
    return ious.double() > iou


def _overlaps(
    boxes: Tensor, area: Tensor, labels: Tensor | None, alive: np.ndarray, start: int, iou: float
) -> np.ndarray:
    """Bool [len(alive), N - start]: box ``alive[r]`` suppresses box ``start + c`` (IoU > iou, same label).

    The diagonal (a box against itself) is cleared.
    """
    rows = torch.from_numpy(alive).to(boxes.device)
    cols = slice(start, None)
    over = _above(_pairwise_iou(boxes[rows], area[rows], boxes[cols], area[cols]), iou)
    if labels is not None:
        over &= labels[rows][:, None] == labels[cols][None, :]
    over_np = over.cpu().numpy()
    over_np[np.arange(alive.size), alive - start] = False
    return over_np


def _greedy_nms(boxes: Tensor, scores: Tensor, labels: Tensor | None, iou: float) -> Tensor:
    """Greedy NMS; ``labels`` None means class-agnostic. Returns kept indices, decreasing score.

    Works on blocks of ``_NMS_BLOCK`` candidates in score order: the suppression rows of a block's surviving
    candidates against all later candidates are computed at once, then walked in order.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = _as_float(boxes)[order]
    labels = None if labels is None else labels[order]
    area = _area(boxes)
    n = boxes.shape[0]
    removed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for start in range(0, n, _NMS_BLOCK):
        alive = np.flatnonzero(~removed[start : start + _NMS_BLOCK]) + start
        if alive.size == 0:
            continue
        over = _overlaps(boxes, area, labels, alive, start, iou)
        hits = np.any(over, axis=1).tolist()
        tail = removed[start:]  # a view: updating it updates `removed`
        for r, i in enumerate(alive.tolist()):
            if not removed[i]:
                keep.append(i)
                if hits[r]:
                    tail |= over[r]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def nms(boxes: Tensor, scores: Tensor, iou: float) -> Tensor:
    """Class-agnostic greedy non-maximum suppression (torchvision ``nms`` semantics).

    Args:
        boxes: ``Tensor[N, 4]`` boxes, xyxy.
        scores: ``Tensor[N]`` scores.
        iou: a box is dropped when its IoU with a kept higher-scoring box is strictly greater than this.

    Returns:
        ``LongTensor[K]`` indices of the kept boxes, in decreasing score order (equal scores: lower index
        first, i.e. a stable descending sort).
    """
    _check_nms_inputs(boxes, scores)
    return _greedy_nms(boxes, scores, None, iou)


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float) -> Tensor:
    """Class-aware NMS: boxes only suppress boxes with the same label.

    Equal to running :func:`nms` on each label's boxes and merging the kept indices by a stable descending
    sort on score. Done in one pass (the IoU of boxes with different labels is masked out), with no
    coordinate-offset trick, so no rounding is introduced.

    Args:
        boxes: ``Tensor[N, 4]`` boxes, xyxy.
        scores: ``Tensor[N]`` scores.
        labels: ``Tensor[N]`` integer class ids.
        iou: IoU threshold (strictly greater suppresses).

    Returns:
        ``LongTensor[K]`` kept indices, decreasing score (ties: lower index first).
    """
    _check_nms_inputs(boxes, scores, labels)
    return _greedy_nms(boxes, scores, labels, iou)


# ---------------------------------------------------------------------------------------------- formats


def _stack(parts: list, like: ArrayLike) -> Any:
    if isinstance(like, Tensor):
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _unpack(boxes: ArrayLike) -> tuple:
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [..., 4], got {tuple(boxes.shape)}")
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def xyxy_to_xywh(boxes: Boxes) -> Boxes:
    """``[..., 4]`` xyxy -> ``[..., 4]`` xywh (centre x, centre y, width, height). Tensor or ndarray."""
    x1, y1, x2, y2 = _unpack(boxes)
    return _stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], boxes)


def xywh_to_xyxy(boxes: Boxes) -> Boxes:
    """``[..., 4]`` xywh (centre x, centre y, width, height) -> ``[..., 4]`` xyxy. Tensor or ndarray."""
    cx, cy, w, h = _unpack(boxes)
    return _stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], boxes)


def xyxy_to_ltwh(boxes: Boxes) -> Boxes:
    """``[..., 4]`` xyxy -> ``[..., 4]`` ltwh (left, top, width, height; COCO json). Tensor or ndarray."""
    x1, y1, x2, y2 = _unpack(boxes)
    return _stack([x1, y1, x2 - x1, y2 - y1], boxes)


def ltwh_to_xyxy(boxes: Boxes) -> Boxes:
    """``[..., 4]`` ltwh (left, top, width, height) -> ``[..., 4]`` xyxy. Tensor or ndarray."""
    x, y, w, h = _unpack(boxes)
    return _stack([x, y, x + w, y + h], boxes)


def xyxy_to_xywhn(boxes: Boxes, hw: tuple[int, int]) -> Boxes:
    """``[..., 4]`` xyxy pixels -> ``[..., 4]`` xywh normalised by the image size ``hw = (height, width)``.

    No clipping: clip with :func:`clip_boxes` first for YOLO labels in [0, 1].
    """
    h, w = hw
    cx, cy, bw, bh = _unpack(xyxy_to_xywh(boxes))
    return _stack([cx / w, cy / h, bw / w, bh / h], boxes)


def clip_boxes(boxes: Boxes, hw: tuple[int, int]) -> Boxes:
    """Clip ``[..., 4]`` xyxy boxes to an image of size ``hw = (height, width)``: x to [0, w], y to [0, h].

    Returns a new Tensor or ndarray of the same type and dtype; the input is not modified.
    """
    h, w = hw
    x1, y1, x2, y2 = _unpack(boxes)
    if isinstance(boxes, Tensor):
        return _stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], boxes)
    return _stack([np.clip(x1, 0, w), np.clip(y1, 0, h), np.clip(x2, 0, w), np.clip(y2, 0, h)], boxes)


_TO_XYXY = {"xyxy": lambda b: b, "xywh": xywh_to_xyxy, "ltwh": ltwh_to_xyxy}
_FROM_XYXY = {"xyxy": lambda b: b, "xywh": xyxy_to_xywh, "ltwh": xyxy_to_ltwh}


def box_convert(boxes: Boxes, in_fmt: str, out_fmt: str) -> Boxes:
    """Convert ``[..., 4]`` boxes between the pixel formats in :data:`BOX_FORMATS` (xyxy, xywh, ltwh).

    Raises:
        ValueError: for a format name not in :data:`BOX_FORMATS`.
    """
    for fmt in (in_fmt, out_fmt):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {', '.join(BOX_FORMATS)}")
    return _FROM_XYXY[out_fmt](_TO_XYXY[in_fmt](boxes))
