"""Label assignment of the YOLO-NAS training loss: which anchors learn which ground-truth box (training-facts
§3.4 TaskAlignedAssigner, §3.5 ATSSAssigner, §3.10 batched vs per-image).

Shapes: B images, n ground-truth slots per image (padded to the batch's largest count), L anchors (all three
levels, P3..P5), C classes. Every box is xyxy in input pixels. Both assigners are vectorised over images,
boxes and anchors (ATSS loops over the three pyramid levels only) and repeat the original's arithmetic step
by step, so the chosen anchors and the soft targets match it bit for bit under the same CPU kernels.

Top-down: the records -> box geometry helpers -> what both assigners share -> TAL -> ATSS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

INSIDE_EPS = 1e-9  # an anchor point is inside a box when its smallest distance to a side exceeds this (px)


class GroundTruth(NamedTuple):
    """The boxes of a batch, padded per image.

    labels [B,n,1] int64 class ids; boxes [B,n,4] xyxy px (padding: zeros); mask [B,n,1] float, 1 for a real
    box and 0 for padding (or a degenerate all-zero box), or None when every slot is real (per-image path).
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    mask: torch.Tensor | None


class Assignment(NamedTuple):
    """The assigner's answer per anchor.

    labels [B,L] int64, the class of the assigned box or `bg_index` (= C) for background; boxes [B,L,4] xyxy px,
    the assigned box (negatives carry the box of slot 0 of their image, zeros when it has none); scores [B,L,C]
    float, the soft target: zero except at the assigned class.
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor


# --------------------------------------------------------------------------------------------------------
# Box geometry
# --------------------------------------------------------------------------------------------------------
def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> torch.Tensor:
    """IoU of every pair: boxes1 [..., n, 4], boxes2 [..., M, 4] (xyxy, broadcast leading dims) -> [..., n, M].

    Intersection and areas clipped at 0; union = area1 + area2 - intersection + eps.
    """
    a, b = boxes1.unsqueeze(-2), boxes2.unsqueeze(-3)
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    overlap = (bottom_right - top_left).clip(0).prod(-1)
    area1 = (a[..., 2:] - a[..., :2]).clip(0).prod(-1)
    area2 = (b[..., 2:] - b[..., :2]).clip(0).prod(-1)
    return overlap / (area1 + area2 - overlap + eps)


def points_inside(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Whether each point lies strictly inside each box: points [L,2] px, boxes [B,n,4] xyxy px -> [B,n,L] float.

    Strictly = its smallest distance to the four sides is > 1e-9.
    """
    x, y = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = (boxes[..., i : i + 1] for i in range(4))
    sides = torch.stack([x - x1, y - y1, x2 - x, y2 - y], -1)
    return (sides.min(-1).values > INSIDE_EPS).to(boxes.dtype)


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes [..., 4] xyxy -> centres [..., 2] ((x1 + x2) / 2, (y1 + y2) / 2)."""
    return torch.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)


# --------------------------------------------------------------------------------------------------------
# Shared by both assigners
# --------------------------------------------------------------------------------------------------------
def topk_mask(values: torch.Tensor, k: int, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest (or smallest) entries along the last dim: values [..., M] -> (mask [..., M] float with 1
    at the chosen entries, top values [..., k])."""
    top_values, top_index = torch.topk(values, k, dim=-1, largest=largest)
    mask = torch.zeros_like(values).scatter_(-1, top_index, 1.0)
    return mask, top_values


def one_gt_per_anchor(positive: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
    """Where an anchor is positive for several boxes, keep only the box with the largest IoU (first on ties,
    over all n slots). positive, ious [B,n,L] -> positive [B,n,L]."""
    claimed_by_several = positive.sum(-2, keepdim=True) > 1
    best = torch.zeros_like(positive).scatter_(-2, ious.argmax(-2, keepdim=True), 1.0)
    return torch.where(claimed_by_several, best, positive)


def gather_targets(gt: GroundTruth, positive: torch.Tensor, num_classes: int) -> Assignment:
    """Labels and boxes per anchor from the positive mask [B,n,L] (at most one 1 per anchor); scores = the
    int64 one-hot [B,L,C] of the label (background rows zero). `num_classes` is also the background label."""
    slot = positive.argmax(-2)  # [B,L]: the positive slot, 0 for negatives
    labels = torch.gather(gt.labels.squeeze(-1), 1, slot)
    labels = torch.where(positive.sum(-2) > 0, labels, torch.full_like(labels, num_classes))
    boxes = torch.gather(gt.boxes, 1, slot.unsqueeze(-1).expand(-1, -1, 4))
    return Assignment(labels, boxes, F.one_hot(labels, num_classes + 1)[..., :num_classes])


def all_background(like: torch.Tensor, num_classes: int) -> Assignment:
    """The answer for a batch without a single box; `like` [B,L,...] gives the sizes, dtype and device."""
    batch, anchors = like.shape[:2]
    return Assignment(
        torch.full((batch, anchors), num_classes, dtype=torch.long, device=like.device),
        like.new_zeros(batch, anchors, 4),
        like.new_zeros(batch, anchors, num_classes),
    )


# --------------------------------------------------------------------------------------------------------
# Task-aligned assigner (TOOD; the YOLO-NAS recipes' choice)
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskAlignedAssigner:
    """Per box, the `topk` anchors inside it with the largest alignment score^alpha * IoU^beta (predicted box
    vs ground truth) are positive; soft targets are the alignment rescaled so each box's best anchor gets the
    box's best IoU (§3.4)."""

    topk: int = 13
    alpha: float = 1.0
    beta: float = 6.0
    eps: float = 1e-9

    @torch.no_grad()
    def __call__(
        self, scores: torch.Tensor, pred_boxes: torch.Tensor, anchor_points: torch.Tensor, gt: GroundTruth
    ) -> Assignment:
        """scores [B,L,C] class probabilities (sigmoid), pred_boxes [B,L,4] xyxy px, anchor_points [L,2] px.

        With `gt.mask` (batched path) the mask is the top-k mask: every real box keeps its `topk` candidates even
        when all its alignments are ~0. Without it (per-image path) a box whose best candidate is <= eps gets
        none.
        """
        num_anchors, num_classes = scores.shape[1:]
        if gt.boxes.shape[1] == 0:
            return all_background(pred_boxes, num_classes)
        ious = pairwise_iou(gt.boxes, pred_boxes, eps=1e-9)  # [B,n,L]
        class_scores = torch.gather(scores.permute(0, 2, 1), 1, gt.labels.expand(-1, -1, num_anchors))
        alignment = class_scores.pow(self.alpha) * ious.pow(self.beta)
        inside = points_inside(anchor_points, gt.boxes)
        candidates, top_values = topk_mask(alignment * inside, self.topk)
        keep = gt.mask if gt.mask is not None else (top_values.max(-1, keepdim=True).values > self.eps).float()
        positive = one_gt_per_anchor(candidates * keep * inside, ious)
        assignment = gather_targets(gt, positive, num_classes)
        aligned = alignment * positive
        best_alignment = aligned.max(-1, keepdim=True).values
        best_iou = (ious * positive).max(-1, keepdim=True).values
        soft = (aligned / (best_alignment + self.eps) * best_iou).max(-2).values.unsqueeze(-1)
        return assignment._replace(scores=assignment.scores * soft)


# --------------------------------------------------------------------------------------------------------
# ATSS (adaptive training sample selection; the original loss's default, no recipe uses it for YOLO-NAS)
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ATSSAssigner:
    """Per box and level, the `topk` anchors closest to its centre are candidates; those whose anchor-box IoU
    exceeds mean + std over the candidates and whose point is inside the box are positive; soft target = the
    IoU of the anchor's predicted box with its box (§3.5). Anchors only: predictions set the targets' values,
    never the choice."""

    topk: int = 9

    @torch.no_grad()
    def __call__(
        self,
        anchor_boxes: torch.Tensor,
        num_anchors_list: list[int],
        gt: GroundTruth,
        pred_boxes: torch.Tensor,
        num_classes: int,
    ) -> Assignment:
        """anchor_boxes [L,4] xyxy px (5*stride squares), num_anchors_list anchors per level, pred_boxes
        [B,L,4] xyxy px. Needs at least `topk` anchors on every level."""
        if min(num_anchors_list) < self.topk:
            raise ValueError(
                f"ATSS needs at least {self.topk} anchors per level, the coarsest has {min(num_anchors_list)}: "
                "use a larger input (at least 96x96)"
            )
        if gt.boxes.shape[1] == 0:
            return all_background(pred_boxes, num_classes)
        ious = pairwise_iou(gt.boxes, anchor_boxes, eps=1e-10)  # [B,n,L]
        anchor_centers = box_centers(anchor_boxes)
        distances = torch.linalg.vector_norm(box_centers(gt.boxes).unsqueeze(-2) - anchor_centers, dim=-1)
        candidates, candidate_index = self._closest_per_level(distances, num_anchors_list, gt.mask)
        candidate_ious = ious * candidates
        picked = torch.gather(candidate_ious, -1, candidate_index)  # [B,n,3*topk]
        threshold = picked.mean(-1, keepdim=True) + picked.std(-1, keepdim=True)
        candidates = torch.where(candidate_ious > threshold, candidates, torch.zeros_like(candidates))
        positive = candidates * points_inside(anchor_centers, gt.boxes)
        if gt.mask is not None:
            positive = positive * gt.mask
        positive = one_gt_per_anchor(positive, ious)
        assignment = gather_targets(gt, positive, num_classes)
        pred_ious = (pairwise_iou(gt.boxes, pred_boxes, eps=1e-9) * positive).max(-2).values.unsqueeze(-1)
        return assignment._replace(scores=assignment.scores.float() * pred_ious)

    def _closest_per_level(
        self, distances: torch.Tensor, num_anchors_list: list[int], mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """distances [B,n,L] -> (candidate mask [B,n,L] float, candidate anchor indices [B,n,levels*topk])."""
        masks, indices, start = [], [], 0
        for level in torch.split(distances, num_anchors_list, dim=-1):
            _, index = torch.topk(level, self.topk, dim=-1, largest=False)
            level_mask = torch.zeros_like(level).scatter_(-1, index, 1.0)
            masks.append(level_mask if mask is None else level_mask * mask)
            indices.append(index + start)
            start += level.shape[-1]
        return torch.cat(masks, -1), torch.cat(indices, -1)
