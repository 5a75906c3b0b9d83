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
`greedy_nms` runs it for a batch of images on their device with no copy to the host (postprocessing uses it;
`nms` and `batched_nms` are its one-image forms).
"""

from __future__ import annotations

from typing import Any, Optional, TypeVar, Union

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
    "greedy_nms",
    "ltwh_to_xyxy",
    "nms",
    "packed_width",
    "xywh_to_xyxy",
    "xyxy_to_ltwh",
    "xyxy_to_xywh",
    "xyxy_to_xywhn",
]

Boxes = TypeVar("Boxes", Tensor, np.ndarray)
ArrayLike = Union[Tensor, np.ndarray]

BOX_FORMATS = ("xyxy", "xywh", "ltwh")
_NMS_BLOCK = 256  # candidates resolved together by greedy NMS (a block's pairwise matrix is block x block)
_NMS_ELEMENTS = 1 << 23  # most pairwise IoU entries computed at once (32 MB per float32 temporary)


# ---------------------------------------------------------------------------------------------------- IoU


def _area(boxes: Tensor) -> Tensor:
    """Areas of ``boxes`` [..., N, 4] xyxy -> [..., N] (negative for inverted boxes, as torchvision)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pairwise_iou(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor) -> Tensor:
    """IoU [..., N, M] of ``a`` [..., N, 4] and ``b`` [..., M, 4] (xyxy) given their precomputed areas.

    Same float operations as torchvision's NMS kernel: ``w = max(0, min(x2) - max(x1))``, likewise ``h``,
    ``inter = w * h``, ``iou = inter / (area_a + area_b - inter)``. In-place steps keep temporaries few.
    """
    ax1, ay1, ax2, ay2 = (c.unsqueeze(-1) for c in a.unbind(-1))
    bx1, by1, bx2, by2 = (c.unsqueeze(-2) for c in b.unbind(-1))
    w = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    h = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0)
    inter = w.mul_(h)
    union = (area_a.unsqueeze(-1) + area_b.unsqueeze(-2)).sub_(inter)
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


def _suppression(
    rows: tuple[Tensor, Tensor, Tensor | None], cols: tuple[Tensor, Tensor, Tensor | None], iou: float
) -> Tensor:
    """Bool [B, R, C]: row box r would suppress column box c (IoU > iou and, with labels, the same label).

    ``rows`` and ``cols`` are (boxes [B, K, 4] xyxy, areas [B, K], labels [B, K] or None)."""
    (a, area_a, label_a), (b, area_b, label_b) = rows, cols
    over = _above(_pairwise_iou(a, area_a, b, area_b), iou)
    if label_a is not None and label_b is not None:
        over &= label_a[:, :, None] == label_b[:, None, :]
    return over


def _resolve_block(over: Tensor, alive: Tensor) -> Tensor:
    """The greedy decisions inside one block: keep [B, M] from ``over`` [B, M, M] (j would suppress i, j < i
    only) and ``alive`` [B, M] (not suppressed from earlier blocks, not padding).

    Greedy NMS is the unique fixed point of ``keep[i] = alive[i] and no kept j < i suppresses i``. Iterating
    that map from ``keep = alive`` gets every i < t right after t steps (each decision reads only earlier
    ones), so it ends in at most M + 1 steps; it usually ends in 2-4, since a box's fate rarely depends on a
    long chain of boxes that suppress each other. Each step is one batched matrix product on the device.
    Stopping needs to know that nothing changed: read every step on a CPU (free), every 4th on a GPU."""
    weights = over.to(torch.float32)  # 0/1: the products count suppressors exactly (M <= 2**24)
    check_every = 1 if over.device.type == "cpu" else 4
    keep = alive
    for step in range(over.shape[1] + 1):
        hit = torch.bmm(keep.to(torch.float32).unsqueeze(1), weights).squeeze(1) > 0
        updated = alive & ~hit
        if (step + 1) % check_every == 0 and torch.equal(updated, keep):
            return updated
        keep = updated
    return keep


def packed_width(mask: Tensor) -> int:
    """How many columns of ``mask`` [B, N] (bool) hold every row's True entries once they are packed to the
    front: the largest count on a CPU, where reading it is free; N on other devices, where reading it would
    wait for the device (the padding then rides along, marked invalid)."""
    if mask.device.type != "cpu" or mask.numel() == 0:
        return mask.shape[1]
    return int(mask.sum(1).max())


def greedy_nms(boxes: Tensor, valid: Tensor, labels: Tensor | None, iou: float, max_keep: int | None = None) -> Tensor:
    """Greedy NMS of candidates already in visiting order, for a batch of images at once, on their device.

    Args:
        boxes: ``Tensor[B, N, 4]`` xyxy, floating; per image in the order candidates are visited (decreasing
            score, ties in the order wanted).
        valid: ``Tensor[B, N]`` bool; False marks padding, which is never kept and suppresses nothing.
        labels: ``Tensor[B, N]`` class ids (class-aware: only equal labels suppress), or None (agnostic).
        iou: a candidate is suppressed when its IoU with an earlier kept one is strictly greater than this.
        max_keep: keep only the first this many (None: all); later candidates are then not examined where
            that can be known for free (on a CPU).

    Returns:
        ``Tensor[B, N]`` bool, True for the kept candidates.

    Works on blocks of ``_NMS_BLOCK`` candidates: a block first loses the candidates that the kept ones of
    earlier blocks suppress (only kept rows are compared), then is resolved by `_resolve_block`. Images are
    taken a few at a time so that no pairwise matrix holds more than ``_NMS_ELEMENTS`` entries. No tensor is
    copied to the host: the only values read are the fixed point's convergence checks, and on a CPU (where
    reading is free) the counts that cut padding and stop early.
    """
    boxes = _as_float(boxes)
    n = valid.shape[1]
    keep = torch.zeros_like(valid, dtype=torch.bool)
    if n == 0:
        return keep
    area = _area(boxes)
    block = max(1, min(_NMS_BLOCK, n))
    images = max(1, _NMS_ELEMENTS // (block * n))
    for first in range(0, valid.shape[0], images):
        part = slice(first, first + images)
        sets = (boxes[part], area[part], None if labels is None else labels[part])
        keep[part] = _greedy_blocks(sets, valid[part], block, iou, max_keep)
    return keep


Sets = tuple[Tensor, Tensor, Optional[Tensor]]  # boxes [B, K, 4] xyxy, areas [B, K], labels [B, K] or None


def _greedy_blocks(sets: Sets, valid: Tensor, block: int, iou: float, max_keep: int | None) -> Tensor:
    """`greedy_nms` on a few images."""
    n = valid.shape[1]
    keep = torch.zeros_like(valid, dtype=torch.bool)
    for start in range(0, n, block):
        now = _cut(sets, start, start + block)
        alive = valid[:, start : start + block]
        if start:
            alive = alive & ~_suppressed_by_kept(sets, keep[:, :start], now, iou)
        keep[:, start : start + block] = _resolve_block(_suppression(now, now, iou).triu_(diagonal=1), alive)
        if max_keep is not None and _all_have(keep, max_keep):
            break
    if max_keep is not None:
        keep &= keep.cumsum(1) <= max_keep
    return keep


def _all_have(keep: Tensor, count: int) -> bool:
    """True when every image keeps ``count`` candidates already, where that is free to know (a CPU); else False."""
    return keep.device.type == "cpu" and bool((keep.sum(1) >= count).all())


def _suppressed_by_kept(sets: Sets, kept: Tensor, cols: Sets, iou: float) -> Tensor:
    """Bool [B, C]: a column candidate is suppressed by one of the ``kept`` [B, S] candidates of ``sets``."""
    order = torch.sort((~kept).to(torch.uint8), dim=1, stable=True).indices[:, : packed_width(kept)]
    rows = tuple(None if t is None else _take(t, order) for t in sets)
    over = _suppression(rows, cols, iou)  # type: ignore[arg-type]
    return (over & kept.gather(1, order)[:, :, None]).any(1)


def _take(values: Tensor, index: Tensor) -> Tensor:
    """``values`` [B, K, ...] at ``index`` [B, R] along dim 1."""
    return values.gather(1, index.view(*index.shape, *([1] * (values.ndim - 2))).expand(-1, -1, *values.shape[2:]))


def _cut(sets: Sets, start: int, stop: int) -> Sets:
    boxes, area, labels = sets
    return boxes[:, start:stop], area[:, start:stop], None if labels is None else labels[:, start:stop]


def _sorted_nms(boxes: Tensor, scores: Tensor, labels: Tensor | None, iou: float) -> Tensor:
    """Kept indices of one image's boxes, visited in stable descending score order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    valid = torch.ones(1, order.numel(), dtype=torch.bool, device=boxes.device)
    ordered_labels = None if labels is None else labels[order][None]
    keep = greedy_nms(_as_float(boxes)[order][None], valid, ordered_labels, iou)[0]
    return order[keep]


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
    return _sorted_nms(boxes, scores, None, iou)


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
    return _sorted_nms(boxes, scores, labels, iou)


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
