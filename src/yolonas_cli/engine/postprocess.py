"""The original's detection post-processing: threshold, pre-NMS top-k, NMS, max detections (facts §6.1).

Per image, on float32:

1. Candidates. Multi-label (the original's default): every (anchor, class) pair with score strictly greater
   than ``conf``, in row-major (anchor, then class) order. Single-label: each anchor's best class, kept when
   its score is greater than or equal to ``conf``.
2. ``classes``: only candidates of these class ids remain (single-label: after choosing the best class).
3. More than ``pre_nms_top_k`` candidates: keep ``torch.topk`` of the scores.
4. Class-aware NMS (``agnostic=True``: class-agnostic) with IoU threshold ``iou``.
5. The first ``max_det`` survivors, in decreasing confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from yolonas_cli.engine.ops import batched_nms, nms

__all__ = ["PRE_NMS_TOP_K", "detections_from_end2end", "filter_detections", "postprocess"]

PRE_NMS_TOP_K = 1024  # the original's predict value: candidates entering NMS (also inside exported NMS graphs)


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


def _candidates(scores: Tensor, conf: float, multi_label: bool, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Candidates of one image from ``scores`` [N, C]: (anchor index [M], score [M], class [M])."""
    if multi_label:
        hit = scores > conf
        if mask is not None:
            hit &= mask[None, :]
        anchor, label = hit.nonzero(as_tuple=True)
        return anchor, scores[anchor, label], label
    best, label = scores.max(dim=1)
    hit = best >= conf
    if mask is not None:
        hit &= mask[label]
    anchor = hit.nonzero(as_tuple=True)[0]
    return anchor, best[anchor], label[anchor]


def _one_image(
    boxes: Tensor,
    scores: Tensor,
    conf: float,
    iou: float,
    max_det: int,
    pre_nms_top_k: int,
    multi_label: bool,
    agnostic: bool,
    mask: Tensor | None,
) -> Tensor:
    """Detections [K, 6] (x1, y1, x2, y2, conf, class) of one image from boxes [N, 4] xyxy, scores [N, C]."""
    anchor, score, label = _candidates(scores, conf, multi_label, mask)
    if score.numel() > pre_nms_top_k:
        top = torch.topk(score, pre_nms_top_k).indices
        anchor, score, label = anchor[top], score[top], label[top]
    cand = boxes[anchor]
    keep = nms(cand, score, iou) if agnostic else batched_nms(cand, score, label, iou)
    keep = keep[:max_det]
    return torch.cat([cand[keep], score[keep, None], label[keep, None].to(cand.dtype)], dim=1)


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
        pre_nms_top_k: at most this many candidates enter NMS (the highest-scoring, ``torch.topk``).
        multi_label: one candidate per (anchor, class) above ``conf`` (True) or per anchor (False).
        agnostic: class-agnostic NMS instead of class-aware.
        classes: keep only these class ids (applied before top-k and NMS; ids outside [0, C) match
            nothing); None keeps all.

    Returns:
        One float32 ``Tensor[K, 6]`` per image, rows ``(x1, y1, x2, y2, conf, class)`` with xyxy in
        network-input pixels and the class id as a float, in decreasing confidence; ``[0, 6]`` when empty.
    """
    _check_inputs(boxes, scores)
    boxes, scores = boxes.float(), scores.float()
    mask = _class_mask(scores.shape[-1], classes, scores.device)
    return [
        _one_image(b, s, conf, iou, max_det, pre_nms_top_k, multi_label, agnostic, mask) for b, s in zip(boxes, scores)
    ]


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
