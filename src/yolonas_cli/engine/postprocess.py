"""The original's detection post-processing: threshold, pre-NMS top-k, NMS, max detections (facts §6.1).

Per image, on float32:

1. Candidates. Multi-label (the original's default): every (anchor, class) pair with score strictly greater
   than ``conf``, in row-major (anchor, then class) order. Single-label: each anchor's best class, kept when
   its score is greater than or equal to ``conf``.
2. ``classes``: only candidates of these class ids remain (single-label: after choosing the best class).
3. More than ``pre_nms_top_k`` candidates: keep the ``pre_nms_top_k`` highest scores; of candidates tied at
   the cut, the first in row-major order (the original's ``torch.topk`` leaves that choice open).
4. Class-aware NMS (``agnostic=True``: class-agnostic) with IoU threshold ``iou``, visiting candidates by
   decreasing score, ties in row-major order.
5. The first ``max_det`` survivors, in decreasing confidence.

The whole batch is processed at once on the device the outputs are on (`postprocess_batch`): no per-image
loop and no copy to the host; the caller copies the final detections once. Candidates are ranked by one
int64 key per (anchor, class) pair, the score's float32 bits above the negated row-major index, so that one
``topk`` both selects and orders them exactly as steps 3 and 4 say. The pairs are first narrowed to the
``pre_nms_top_k`` anchors with the best candidate: a pair among the best k has fewer than k pairs above it,
hence fewer than k anchors whose best pair is above it, so its anchor is among the best k anchors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from yolonas_cli.engine.ops import greedy_nms, packed_width

__all__ = ["PRE_NMS_TOP_K", "detections_from_end2end", "filter_detections", "postprocess", "postprocess_batch"]

PRE_NMS_TOP_K = 1024  # the original's predict value: candidates entering NMS (also inside exported NMS graphs)
_NO_KEY = torch.iinfo(torch.int64).min  # the rank key of "not a candidate"
_INDEX_BITS = 32  # the low bits of a rank key hold (2**32 - 1 - row-major index)


def _check_inputs(boxes: Tensor, scores: Tensor) -> None:
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [B, N, 4], got {tuple(boxes.shape)}")
    if scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"scores must have shape [{boxes.shape[0]}, {boxes.shape[1]}, C], got {tuple(scores.shape)}")


def _class_mask(num_classes: int, classes: Sequence[int] | None, device: torch.device) -> Tensor | None:
    """Bool [C] of the wanted class ids, or None for all classes."""
    if classes is None:
        return None
    mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
    wanted = [c for c in classes if 0 <= c < num_classes]
    mask[torch.tensor(wanted, dtype=torch.long, device=device)] = True
    return mask


def rank_keys(values: Tensor, index: Tensor, hit: Tensor) -> Tensor:
    """int64 keys ordering candidates by value (descending), then by index (ascending); ``_NO_KEY`` where
    ``hit`` is False.

    values: float32 (any shape); index: int64 in [0, 2**32) of the same shape; hit: bool of the same shape.
    The float32 bits are made monotonic as signed integers (negative values' magnitude bits flipped; -0.0
    counts as 0.0)."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    keys = (ordered << _INDEX_BITS) | ((1 << _INDEX_BITS) - 1 - index)
    return torch.where(hit, keys, torch.full_like(keys, _NO_KEY))


def _index_of(keys: Tensor) -> Tensor:
    """The index stored in rank keys (garbage where the key is ``_NO_KEY``)."""
    return (1 << _INDEX_BITS) - 1 - (keys & ((1 << _INDEX_BITS) - 1))


def _multi_label(scores: Tensor, conf: float, k: int, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The best ``k`` (anchor, class) candidates of each image, in visiting order, from ``scores`` [B, N, C]:
    (rank keys [B, k'], row-major indices anchor * C + class [B, k']), k' <= k."""
    b, n, c = scores.shape
    hit = scores > conf
    if mask is not None:
        hit &= mask
    anchors = torch.arange(n, device=scores.device).expand(b, n)
    if n > k:  # narrow to the k anchors with the best candidate (see the module docstring)
        best = torch.where(hit, scores, torch.tensor(-torch.inf, device=scores.device)).amax(-1)
        top = torch.topk(rank_keys(best, anchors, best > -torch.inf), k, dim=1)
        anchors = top.indices[:, : packed_width(top.values != _NO_KEY)]
        scores, hit = (t.gather(1, anchors[..., None].expand(-1, -1, c)) for t in (scores, hit))
    index = anchors[..., None] * c + torch.arange(c, device=scores.device)
    keys = rank_keys(scores, index, hit).reshape(b, -1)
    top_keys = torch.topk(keys, min(k, keys.shape[1]), dim=1).values
    return top_keys, _index_of(top_keys)


def _single_label(scores: Tensor, conf: float, k: int, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The best ``k`` anchors of each image by their best class, in visiting order: (rank keys [B, k],
    row-major indices anchor * C + class [B, k])."""
    b, n, c = scores.shape
    best, label = scores.max(-1)
    hit = best >= conf
    if mask is not None:
        hit &= mask[label]
    anchors = torch.arange(n, device=scores.device).expand(b, n)
    top = torch.topk(rank_keys(best, anchors, hit), min(k, n), dim=1)
    index = top.indices * c + label.gather(1, top.indices)
    return top.values, index


def postprocess_batch(
    boxes: Tensor,
    scores: Tensor,
    *,
    conf: float,
    iou: float,
    max_det: int = 300,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
    multi_label: bool = True,
    agnostic: bool = False,
    classes: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """`postprocess` for the whole batch at once, on the inputs' device.

    Returns:
        ``(detections, counts)``: float32 ``Tensor[B, M, 6]`` rows ``(x1, y1, x2, y2, conf, class)`` (network
        input pixels, decreasing confidence; rows from ``counts[b]`` on are zeros) and int64 ``Tensor[B]``, the
        number of detections of each image. M is at most ``max_det``.
    """
    _check_inputs(boxes, scores)
    boxes, scores = boxes.float(), scores.float()
    b, n, c = scores.shape
    mask = _class_mask(c, classes, scores.device)
    choose = _multi_label if multi_label else _single_label
    keys, index = choose(scores, conf, pre_nms_top_k, mask) if n and c else _nothing(b, scores.device)
    index, valid = _without_padding(keys, index)
    anchor, label = index // max(c, 1), index % max(c, 1)
    cand = boxes.gather(1, anchor[..., None].expand(-1, -1, 4))
    score = scores.reshape(b, -1).gather(1, index)
    keep = greedy_nms(cand, valid, None if agnostic else label, iou, max_keep=max_det)
    rows = torch.cat([cand, score[..., None], label[..., None].to(cand.dtype)], dim=2)
    return _compact(rows, keep, max_det)


def _without_padding(keys: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """(index [B, K'], valid [B, K']) of ranked candidates: the padding after the last candidate is cut where
    that is free to know (a CPU, see `ops.packed_width`); the rest of the padding points at entry 0."""
    valid = keys != _NO_KEY
    width = packed_width(valid)
    index, valid = index[:, :width], valid[:, :width]
    return torch.where(valid, index, torch.zeros_like(index)), valid


def _nothing(b: int, device: torch.device) -> tuple[Tensor, Tensor]:
    empty = torch.zeros(b, 0, dtype=torch.int64, device=device)
    return empty, empty


def _compact(rows: Tensor, keep: Tensor, max_det: int) -> tuple[Tensor, Tensor]:
    """The kept rows [B, K, 6] moved to the front in order, cut to M = min(max_det, K), the rest zeroed."""
    first = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :max_det]
    out = rows.gather(1, first[..., None].expand(-1, -1, rows.shape[2]))
    counts = keep.sum(1)
    filled = torch.arange(out.shape[1], device=out.device) < counts[:, None]
    return torch.where(filled[..., None], out, torch.zeros_like(out)), counts


def postprocess(
    boxes: Tensor,
    scores: Tensor,
    *,
    conf: float,
    iou: float,
    max_det: int = 300,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
    multi_label: bool = True,
    agnostic: bool = False,
    classes: Sequence[int] | None = None,
) -> list[Tensor]:
    """Turn decoded head outputs into detections, exactly as the original's predict does.

    Args:
        boxes: ``Tensor[B, N, 4]`` xyxy boxes in network-input pixels.
        scores: ``Tensor[B, N, C]`` per-class probabilities (after sigmoid).
        conf: score threshold; multi-label keeps ``score > conf``, single-label ``score >= conf``.
        iou: NMS IoU threshold; a box is suppressed when its IoU with a kept box is strictly greater.
        max_det: at most this many detections per image.
        pre_nms_top_k: at most this many candidates enter NMS (the highest-scoring; ties at the cut: the
            first in row-major order).
        multi_label: one candidate per (anchor, class) above ``conf`` (True) or per anchor (False).
        agnostic: class-agnostic NMS instead of class-aware.
        classes: keep only these class ids (applied before top-k and NMS; ids outside [0, C) match
            nothing); None keeps all.

    Returns:
        One float32 ``Tensor[K, 6]`` per image, rows ``(x1, y1, x2, y2, conf, class)`` with xyxy in
        network-input pixels and the class id as a float, in decreasing confidence; ``[0, 6]`` when empty.
        On the inputs' device (see `postprocess_batch`, which returns them padded in one tensor).
    """
    detections, counts = postprocess_batch(
        boxes,
        scores,
        conf=conf,
        iou=iou,
        max_det=max_det,
        pre_nms_top_k=pre_nms_top_k,
        multi_label=multi_label,
        agnostic=agnostic,
        classes=classes,
    )
    return [det[:count] for det, count in zip(detections, counts.tolist())]


def detections_from_end2end(num_dets: Tensor, boxes: Tensor, scores: Tensor, classes: Tensor) -> list[Tensor]:
    """The outputs of a graph with NMS inside (num_dets [B,1], det_boxes [B,M,4], det_scores [B,M],
    det_classes [B,M]) -> per image float32 ``Tensor[K, 6]`` (x1, y1, x2, y2, conf, class), like `postprocess`."""
    out = []
    for n, b, s, c in zip(num_dets.reshape(-1).tolist(), boxes, scores, classes):
        out.append(torch.cat([b[:n].float(), s[:n, None].float(), c[:n, None].float()], 1))
    return out


def filter_detections(
    detections: Sequence[Tensor], *, conf: float, max_det: int, classes: Sequence[int] | None = None
) -> list[Tensor]:
    """Final detections ``Tensor[K, 6]`` per image (decreasing confidence) kept when ``conf > conf`` and of
    one of ``classes`` (None: all), at most ``max_det``: what a graph with NMS inside leaves to do."""
    out = []
    for det in detections:
        keep = det[:, 4] > conf
        if classes is not None:
            keep &= torch.isin(det[:, 5], torch.tensor(classes, dtype=det.dtype, device=det.device))
        out.append(det[keep][:max_det])
    return out
