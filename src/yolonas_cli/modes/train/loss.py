"""The YOLO-NAS training loss: the original's PPYoloELoss (training-facts §2, §3).

loss = 1.0 * varifocal + 2.5 * GIoU + 0.5 * DFL, each a sum divided by S = max(sum of the soft targets, 1)
over the whole batch. Targets come as one float tensor [N,6] (image index, class id, cx, cy, w, h) in input
pixels; the model's raw outputs as `TrainOutputs`. Boxes are compared in grid units (pixels / stride), the
assigners work in pixels.

Top-down: targets -> box decoding -> the three terms -> `PPYoloELoss` (assignment, sums, DDP, normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from yolonas_cli.model.heads import TrainOutputs, distances_to_boxes
from yolonas_cli.modes.train.assigners import Assignment, ATSSAssigner, GroundTruth, TaskAlignedAssigner

COMPONENT_NAMES = ("loss_cls", "loss_iou", "loss_dfl", "loss")
DFL_TARGET_MARGIN = 0.01  # DFL targets are clipped to [0, reg_max - 0.01] grid units (15.99 for 17 bins)


# --------------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------------
def pad_targets(targets: torch.Tensor, batch_size: int) -> GroundTruth:
    """Targets [N,6] (image, class, cx, cy, w, h) px -> GroundTruth padded to n = the most boxes of an image.

    Rows keep their order within an image; padding is class 0, box (0,0,0,0). mask = 1 where the four xyxy
    coordinates sum to > 0. Rows whose image index is outside [0, batch_size) are ignored.
    """
    image = targets[:, 0].long()
    targets = targets[(image >= 0) & (image < batch_size)]
    image = targets[:, 0].long()
    counts = torch.bincount(image, minlength=batch_size)
    slots = int(counts.max()) if len(targets) else 0
    order = torch.argsort(image, stable=True)
    first_row = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(image)
    slot[order] = torch.arange(len(image), device=image.device) - first_row[image[order]]
    labels = torch.zeros(batch_size, slots, 1, dtype=torch.long, device=targets.device)
    boxes = torch.zeros(batch_size, slots, 4, dtype=targets.dtype, device=targets.device)
    labels[image, slot] = targets[:, 1:2].long()
    boxes[image, slot] = cxcywh_to_xyxy(targets[:, 2:6])
    return GroundTruth(labels, boxes, (boxes.sum(-1, keepdim=True) > 0).to(boxes.dtype))


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[...,4] (cx, cy, w, h) -> (x1, y1, x2, y2) with the original's order: x1 = cx - 0.5w, x2 = x1 + w."""
    x1 = boxes[..., 0] - 0.5 * boxes[..., 2]
    y1 = boxes[..., 1] - 0.5 * boxes[..., 3]
    return torch.stack([x1, y1, x1 + boxes[..., 2], y1 + boxes[..., 3]], -1)


def image_ground_truth(targets: torch.Tensor, image: int) -> GroundTruth:
    """One image's rows of targets [N,6], unpadded and without mask (the per-image path): labels [1,k,1],
    boxes [1,k,4] xyxy px. Every row counts, even an all-zero box (only the batched path masks those)."""
    rows = targets[targets[:, 0].long() == image]
    return GroundTruth(rows[:, 1:2].long().unsqueeze(0), cxcywh_to_xyxy(rows[:, 2:6]).unsqueeze(0), None)


# --------------------------------------------------------------------------------------------------------
# Box decoding (the loss's own, in the original loss's layout)
# --------------------------------------------------------------------------------------------------------
def decode_boxes(anchor_points_s: torch.Tensor, reg_distri: torch.Tensor) -> torch.Tensor:
    """DFL logits [B,L,4*(R+1)] -> predicted boxes [B,L,4] xyxy in grid units around anchor_points_s [L,2].

    softmax over the R+1 bins of each side, expectation sum_k k*p_k as a 1x1 convolution of the [B,R+1,L,4]
    permutation (the original loss's operations; the head decodes the same numbers in its own layout).
    """
    batch, anchors, channels = reg_distri.shape
    probs = reg_distri.reshape(batch, anchors, 4, channels // 4).softmax(-1)
    bins = torch.arange(channels // 4, dtype=probs.dtype, device=probs.device).reshape(1, -1, 1, 1)
    distances = F.conv2d(probs.permute(0, 3, 1, 2), bins).squeeze(1)
    return distances_to_boxes(anchor_points_s, distances)


# --------------------------------------------------------------------------------------------------------
# The three terms (sums, not means)
# --------------------------------------------------------------------------------------------------------
def varifocal_sum(logits: torch.Tensor, soft_targets: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """Varifocal loss summed over [B,L,C]: w * BCE-with-logits(x, q), w = 0.75 sigmoid(x)^2 (1 - y) + q y.

    logits x, soft targets q and the 0/1 one-hot y of the assigned class, all [B,L,C]. w is not detached.
    """
    weight = 0.75 * logits.sigmoid().pow(2.0) * (1 - one_hot) + soft_targets * one_hot
    return (weight * F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none")).sum()


def giou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """1 - GIoU of aligned pairs: pred, target [P,4] xyxy (grid units) -> [P,1]. Areas not clipped."""
    x1, y1, x2, y2 = pred.chunk(4, -1)
    gx1, gy1, gx2, gy2 = target.chunk(4, -1)
    overlap = (torch.minimum(x2, gx2) - torch.maximum(x1, gx1)).clip(0) * (
        torch.minimum(y2, gy2) - torch.maximum(y1, gy1)
    ).clip(0)
    union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - overlap + eps
    enclosing = (torch.maximum(x2, gx2) - torch.minimum(x1, gx1)) * (torch.maximum(y2, gy2) - torch.minimum(y1, gy1))
    enclosing = enclosing + eps
    return 1 - (overlap / union - (enclosing - union) / enclosing)


def dfl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss: logits [P,4,R+1], target distances [P,4] in [0, R) grid units -> [P,1].

    Cross-entropy towards the two bins around the target, weighted by closeness, mean over the 4 sides.
    """
    left = target.long()
    right = left + 1
    weight_left = right.float() - target
    weight_right = 1 - weight_left
    logits = logits.moveaxis(-1, 1)
    loss_left = F.cross_entropy(logits, left, reduction="none") * weight_left
    loss_right = F.cross_entropy(logits, right, reduction="none") * weight_right
    return (loss_left + loss_right).mean(-1, keepdim=True)


def box_to_distances(points: torch.Tensor, boxes: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Anchor points [L,2] and boxes [B,L,4] xyxy (grid units) -> (l, t, r, b) [B,L,4] clipped to [0, R-0.01]."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], -1).clip(0, reg_max - DFL_TARGET_MARGIN)


# --------------------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------------------
class LossSums(NamedTuple):
    """The four batch sums (scalars) before normalisation: classification, IoU, DFL, soft targets (S)."""

    cls: torch.Tensor
    iou: torch.Tensor
    dfl: torch.Tensor
    scores: torch.Tensor


@dataclass(frozen=True)
class PPYoloELoss:
    """PPYoloELoss(num_classes)(outputs, targets) -> (loss [], components [4] detached).

    components = [loss_cls, loss_iou, loss_dfl, loss] (weighted and normalised, as the original logs them).
    `use_static_assigner` defaults to True (ATSS) like the original; every YOLO-NAS recipe sets False (TAL).
    `use_batched_assignment=False` assigns image by image (TAL then drops boxes whose best alignment <= 1e-9).
    """

    num_classes: int
    use_static_assigner: bool = True
    use_batched_assignment: bool = True
    cls_weight: float = 1.0
    iou_weight: float = 2.5
    dfl_weight: float = 0.5
    tal: TaskAlignedAssigner = field(default_factory=TaskAlignedAssigner)
    atss: ATSSAssigner = field(default_factory=ATSSAssigner)

    def __call__(self, outputs: TrainOutputs, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """outputs: the model's `TrainOutputs`; targets [N,6] (image, class, cx, cy, w, h) px."""
        if self.use_batched_assignment:
            sums = self._sums(
                outputs, outputs.cls_logits, outputs.reg_distri, pad_targets(targets, len(outputs.cls_logits))
            )
        else:
            sums = self._per_image_sums(outputs, targets)
        sums = all_reduce_sums(sums)
        normaliser = sums.scores.clip(min=1.0)
        loss_cls = self.cls_weight * sums.cls / normaliser
        loss_iou = self.iou_weight * sums.iou / normaliser
        loss_dfl = self.dfl_weight * sums.dfl / normaliser
        loss = loss_cls + loss_iou + loss_dfl
        return loss, torch.stack([loss_cls, loss_iou, loss_dfl, loss]).detach()

    def assign(self, outputs: TrainOutputs, targets: torch.Tensor) -> Assignment:
        """The batched assignment the loss uses (for inspection): labels [B,L], boxes [B,L,4] px, scores [B,L,C]."""
        gt = pad_targets(targets, len(outputs.cls_logits))
        return self._decode_and_assign(outputs, outputs.cls_logits, outputs.reg_distri, gt)[1]

    def _per_image_sums(self, outputs: TrainOutputs, targets: torch.Tensor) -> LossSums:
        """The four sums added up image by image (in order), each image assigned on its own boxes."""
        totals: LossSums | None = None
        for i in range(len(outputs.cls_logits)):
            cls_logits, reg_distri = outputs.cls_logits[i : i + 1], outputs.reg_distri[i : i + 1]
            image = self._sums(outputs, cls_logits, reg_distri, image_ground_truth(targets, i))
            totals = image if totals is None else LossSums(*(a + b for a, b in zip(image, totals)))
        assert totals is not None, "a batch has at least one image"
        return totals

    def _sums(
        self, outputs: TrainOutputs, cls_logits: torch.Tensor, reg_distri: torch.Tensor, gt: GroundTruth
    ) -> LossSums:
        """The three terms and the soft targets summed over a group of images (cls_logits [b,L,C], reg_distri
        [b,L,4*(R+1)], gt of those b images)."""
        pred_boxes, assignment = self._decode_and_assign(outputs, cls_logits, reg_distri, gt)
        one_hot = F.one_hot(assignment.labels, self.num_classes + 1)[..., :-1]
        cls_sum = varifocal_sum(cls_logits, assignment.scores, one_hot)
        anchor_points_s = outputs.anchor_points / outputs.stride_tensor
        assigned_boxes_s = assignment.boxes / outputs.stride_tensor
        iou_sum, dfl_sum = self._box_sums(reg_distri, pred_boxes, anchor_points_s, assignment, assigned_boxes_s)
        return LossSums(cls_sum, iou_sum, dfl_sum, assignment.scores.sum())

    def _decode_and_assign(
        self, outputs: TrainOutputs, cls_logits: torch.Tensor, reg_distri: torch.Tensor, gt: GroundTruth
    ) -> tuple[torch.Tensor, Assignment]:
        """(predicted boxes [b,L,4] grid units, the assignment made with the detached predictions in pixels)."""
        pred_boxes = decode_boxes(outputs.anchor_points / outputs.stride_tensor, reg_distri)
        pred_boxes_px = pred_boxes.detach() * outputs.stride_tensor
        if self.use_static_assigner:
            assignment = self.atss(outputs.anchors, outputs.num_anchors_list, gt, pred_boxes_px, self.num_classes)
        else:
            assignment = self.tal(cls_logits.detach().sigmoid(), pred_boxes_px, outputs.anchor_points, gt)
        return pred_boxes, assignment

    def _box_sums(
        self,
        reg_distri: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points_s: torch.Tensor,
        assignment: Assignment,
        assigned_boxes_s: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GIoU and DFL sums over positive anchors, each weighted by the anchor's soft target (grid units)."""
        positive = assignment.labels != self.num_classes
        if not bool(positive.any()):
            return torch.zeros([], device=pred_boxes.device), reg_distri.sum() * 0.0
        weight = assignment.scores.sum(-1)[positive].unsqueeze(-1)  # [P,1]
        iou_sum = (giou_loss(pred_boxes[positive], assigned_boxes_s[positive]) * weight).sum()
        reg_max = reg_distri.shape[-1] // 4 - 1
        logits = reg_distri[positive].reshape(-1, 4, reg_max + 1)
        target = box_to_distances(anchor_points_s, assigned_boxes_s, reg_max)[positive]
        return iou_sum, (dfl_loss(logits, target) * weight).sum()


def all_reduce_sums(sums: LossSums) -> LossSums:
    """Under torch.distributed: every sum becomes the sum over processes and S their mean (§3.10). Each process
    back-propagates its own sums divided by that global S; DDP's gradient averaging then makes the step equal
    to one process with the whole batch."""
    if not (dist.is_available() and dist.is_initialized()):
        return sums
    cls, iou, dfl, scores = (_SumOverProcesses.apply(total) for total in sums)
    return LossSums(cls, iou, dfl, scores / dist.get_world_size())


class _SumOverProcesses(torch.autograd.Function):
    """Forward: the sum of a tensor over all processes. Backward: the incoming gradient, unchanged, to this
    process's own tensor."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, local: torch.Tensor) -> torch.Tensor:
        total = local.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad
