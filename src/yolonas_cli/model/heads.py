"""YOLO-NAS's DFL heads: one decoupled head per level (P3, P4, P5), the distribution-focal decoding into
boxes, and the raw outputs the training loss receives. Facts doc sections 2-3.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from yolonas_cli.model.arch import ArchSpec
from yolonas_cli.model.blocks import ConvBNReLU

STRIDES = (8, 16, 32)
ANCHOR_BOX_SCALE = 5.0  # the loss's anchor boxes are squares of side 5 * stride around each anchor point


class TrainOutputs(NamedTuple):
    """What the training loss receives (the original's six raw outputs, in its order). L anchors, P3..P5.

    cls_logits [B,L,C] class logits; reg_distri [B,L,4*(reg_max+1)] DFL logits, channel = side*(reg_max+1)+bin,
    sides l,t,r,b; anchors [L,4] xyxy px, squares of side 5*stride centred on the anchor points (float32);
    anchor_points [L,2] px, ((col+0.5)*stride, (row+0.5)*stride) (float32); num_anchors_list: anchors per
    level; stride_tensor [L,1] the stride of each anchor (feature dtype).
    """

    cls_logits: torch.Tensor
    reg_distri: torch.Tensor
    anchors: torch.Tensor
    anchor_points: torch.Tensor
    num_anchors_list: list[int]
    stride_tensor: torch.Tensor


class TrainForward(NamedTuple):
    """A training forward: pred_bboxes [B,L,4] xyxy px decoded by the head (the loss does not read them;
    scores would be sigmoid(raw.cls_logits)) and the raw outputs for the loss."""

    pred_bboxes: torch.Tensor
    raw: TrainOutputs


class DFLHead(nn.Module):
    """One level's decoupled head. [B,Cin,h,w] -> (reg [B,4*(reg_max+1),h,w], cls logits [B,C,h,w])."""

    def __init__(self, in_channels: int, inter_channels: int, num_classes: int, reg_max: int):
        super().__init__()
        self.stem = ConvBNReLU(in_channels, inter_channels, 1)
        self.cls_convs = nn.Sequential(ConvBNReLU(inter_channels, inter_channels, 3))
        self.reg_convs = nn.Sequential(ConvBNReLU(inter_channels, inter_channels, 3))
        self.cls_pred = nn.Conv2d(inter_channels, num_classes, 1)
        self.reg_pred = nn.Conv2d(inter_channels, 4 * (reg_max + 1), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        return self.reg_pred(self.reg_convs(x)), self.cls_pred(self.cls_convs(x))


class DFLHeads(nn.Module):
    """Three heads plus the DFL decoding.

    Input (p3, p4, p5); output boxes [B,N,4] xyxy in input pixels and scores [B,N,C] after sigmoid, with
    N = sum(h*w) over the levels (8400 at 640x640), anchors in P3, P4, P5 order, row-major.
    """

    def __init__(self, in_channels: tuple[int, int, int], arch: ArchSpec):
        super().__init__()
        self.num_classes, self.reg_max = arch.num_classes, arch.reg_max
        heads = [
            DFLHead(cin, inter, arch.num_classes, arch.reg_max) for cin, inter in zip(in_channels, arch.head_channels)
        ]
        self.head1, self.head2, self.head3 = heads  # registered in this order
        self.proj_conv: torch.Tensor
        bins = torch.arange(arch.reg_max + 1, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer("proj_conv", bins, persistent=False)

    def raw(self, features: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cls_logits [B,N,C], reg_distri [B,N,4*(reg_max+1)], distances [B,N,4] in grid cells (l,t,r,b),
        anchors [N,3] = (x, y, stride) with x, y cell centres in grid units)."""
        heads = (self.head1, self.head2, self.head3)
        cls_parts, reg_parts, dist_parts, anchor_parts = [], [], [], []
        for head, feature, stride in zip(heads, features, STRIDES):
            batch, _, height, width = feature.shape
            reg, cls = head(feature)
            reg_parts.append(reg.flatten(2).permute(0, 2, 1))
            dist_parts.append(self._expected_distance(reg, batch, height * width))
            cls_parts.append(cls.flatten(2))
            anchor_parts.append(_anchor_grid(height, width, stride, feature.device, feature.dtype))
        cls_logits = torch.cat(cls_parts, -1).permute(0, 2, 1)
        return cls_logits, torch.cat(reg_parts, 1), torch.cat(dist_parts, 1), torch.cat(anchor_parts, 0)

    def _expected_distance(self, reg: torch.Tensor, batch: int, cells: int) -> torch.Tensor:
        """DFL: softmax over reg_max+1 bins, expectation over 0..reg_max. -> [B, cells, 4]."""
        bins = reg.reshape(batch, 4, self.reg_max + 1, cells).permute(0, 2, 3, 1)
        return F.conv2d(bins.softmax(1), self.proj_conv.to(reg.dtype)).squeeze(1)

    def forward(self, features: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        cls_logits, _, distances, anchors = self.raw(features)
        return _decode(distances, anchors), cls_logits.sigmoid()

    def forward_train(self, features: tuple[torch.Tensor, ...]) -> TrainForward:
        """The decoded boxes and the raw outputs the training loss receives (one pass through the heads)."""
        cls_logits, reg_distri, distances, anchors = self.raw(features)
        grid = anchors.float()  # anchor points and boxes in float32 whatever the feature dtype (exact values)
        points = grid[:, :2] * grid[:, 2:]
        half = grid[:, 2:] * (ANCHOR_BOX_SCALE / 2)
        raw = TrainOutputs(
            cls_logits=cls_logits,
            reg_distri=reg_distri,
            anchors=torch.cat([points - half, points + half], -1),
            anchor_points=points,
            num_anchors_list=[f.shape[2] * f.shape[3] for f in features],
            stride_tensor=anchors[:, 2:],
        )
        return TrainForward(_decode(distances, anchors), raw)


def _decode(distances: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Distances [B,N,4] (l,t,r,b) and anchors [N,3] (x, y, stride), grid units -> boxes [B,N,4] xyxy px."""
    # Original order: subtract/add in grid units, then scale by the stride.
    return distances_to_boxes(anchors[:, :2], distances) * anchors[:, 2:]


def distances_to_boxes(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Anchor points [N,2] (x, y) and distances [B,N,4] (l,t,r,b) -> boxes [B,N,4] xyxy, all in the same unit.

    Exactly the original's arithmetic: (x - l, y - t, r + x, b + y).
    """
    return torch.cat([points - distances[..., :2], distances[..., 2:] + points], -1)


def _anchor_grid(height: int, width: int, stride: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[h*w, 3] rows (col + 0.5, row + 0.5, stride), row-major."""
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    strides = torch.full_like(grid_x, float(stride))
    return torch.stack([grid_x, grid_y, strides], -1).reshape(-1, 3).to(dtype)
