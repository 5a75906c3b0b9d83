"""YOLO-NAS (Deci, 2023): backbone, PAN neck and DFL heads, clean-room from the facts doc (sections 1-3).

Top-down: CSP stages -> backbone -> neck -> heads -> `YoloNAS` -> the architecture records. The S, M
and L variants are rows of one table (`VARIANTS`) of frozen dataclasses; `arch_from_state_dict` reads the
same record back from any checkpoint's tensors, so custom-trained checkpoints (other widths, depths or
class counts) build through the same path.

Module attribute names reproduce the original checkpoints' state-dict keys exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from yolonas_cli.model.blocks import ConvBNAct, ConvBNReLU, QARepVGGBlock

STRIDES = (8, 16, 32)
SPP_KERNELS = (5, 9, 13)
ANCHOR_BOX_SCALE = 5.0  # the loss's anchor boxes are squares of side 5 * stride around each anchor point


# --------------------------------------------------------------------------------------------------------
# Architecture records
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageSpec:
    """One CSP stage: output channels, bottleneck count, hidden width, and whether every bottleneck's
    output (not only the last) is concatenated before the final 1x1 conv."""

    out_channels: int
    num_blocks: int
    hidden_channels: int
    concat_intermediates: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """A whole YOLO-NAS architecture. Everything the state dict determines, nothing else."""

    stem_channels: int  # output channels of the stride-2 stem
    stages: tuple[StageSpec, StageSpec, StageSpec, StageSpec]  # backbone stages 1-4 (strides 4..32)
    spp_channels: int  # output channels of the SPP context module
    necks: tuple[StageSpec, StageSpec, StageSpec, StageSpec]  # neck1, neck2 (up), neck3, neck4 (down)
    head_channels: tuple[int, int, int]  # inner width of the P3, P4, P5 heads
    num_classes: int = 80
    reg_max: int = 16  # DFL bins per box side = reg_max + 1
    in_channels: int = 3


@dataclass(frozen=True)
class Variant:
    """A named architecture with the facts a user sees in `info`."""

    name: str
    arch: ArchSpec
    published_map: float | None = None  # COCO val2017 mAP50-95 published by Deci
    notes: str = field(default="", compare=False)


VARIANTS: dict[str, Variant] = {
    "yolo_nas_s": Variant("yolo_nas_s", ArchSpec(
        stem_channels=48,
        stages=(StageSpec(96, 2, 32), StageSpec(192, 3, 64), StageSpec(384, 5, 96), StageSpec(768, 2, 192)),
        spp_channels=768,
        necks=(StageSpec(192, 2, 64), StageSpec(96, 2, 48), StageSpec(192, 2, 64), StageSpec(384, 2, 64)),
        head_channels=(64, 128, 256),
    ), published_map=47.5),
    "yolo_nas_m": Variant("yolo_nas_m", ArchSpec(
        stem_channels=48,
        stages=(StageSpec(96, 2, 64, True), StageSpec(192, 3, 128, True), StageSpec(384, 5, 256, True),
                StageSpec(768, 2, 384, False)),
        spp_channels=768,
        necks=(StageSpec(192, 2, 192), StageSpec(96, 3, 64), StageSpec(192, 2, 192), StageSpec(384, 3, 256)),
        head_channels=(96, 192, 384),
    ), published_map=51.55),
    "yolo_nas_l": Variant("yolo_nas_l", ArchSpec(
        stem_channels=48,
        stages=(StageSpec(96, 2, 96, True), StageSpec(192, 3, 128, True), StageSpec(384, 5, 256, True),
                StageSpec(768, 2, 512, True)),
        spp_channels=768,
        necks=(StageSpec(192, 4, 128), StageSpec(96, 4, 128), StageSpec(192, 4, 128), StageSpec(384, 4, 256)),
        head_channels=(128, 256, 512),
    ), published_map=52.22),
}  # fmt: skip


def variant_name(arch: ArchSpec) -> str | None:
    """The table name of an architecture ('yolo_nas_s', ...), or None for a custom one.

    The class count does not matter: a custom-trained S is still an S.
    """
    for name, variant in VARIANTS.items():
        if _same_layout(variant.arch, arch):
            return name
    return None


def _same_layout(a: ArchSpec, b: ArchSpec) -> bool:
    return (a.stem_channels, a.stages, a.spp_channels, a.necks, a.head_channels, a.reg_max) == (
        b.stem_channels,
        b.stages,
        b.spp_channels,
        b.necks,
        b.head_channels,
        b.reg_max,
    )


# --------------------------------------------------------------------------------------------------------
# CSP stages
# --------------------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """x -> alpha * x + cv2(cv1(x)), with a learned scalar `alpha` [1]. QARepVGG or Conv3x3 inner blocks."""

    def __init__(self, channels: int, repvgg: bool):
        super().__init__()
        if repvgg:
            self.cv1: nn.Module = QARepVGGBlock(channels, channels)
            self.cv2: nn.Module = QARepVGGBlock(channels, channels)
        else:
            self.cv1 = ConvBNAct(channels, channels, 3)
            self.cv2 = ConvBNAct(channels, channels, 3)
        self.alpha = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The branch first, then the shortcut: the original's order, which fixes the order in which backward
        # adds up the gradients reaching x (bit-exact gradients).
        branch = self.cv2(self.cv1(x))
        return self.alpha * x + branch


class CSPLayer(nn.Module):
    """Cross-stage-partial layer. [B,Cin,H,W] -> [B,Cout,H,W].

    conv1 -> bottlenecks (keeping every intermediate when `concat_intermediates`), conv2 in parallel,
    concat [conv1 out?, b1..bN or bN, conv2 out], then conv3 (1x1).
    """

    def __init__(self, in_channels: int, spec: StageSpec, repvgg: bool):
        super().__init__()
        hidden, count = spec.hidden_channels, spec.num_blocks
        self.concat_intermediates = spec.concat_intermediates
        concat_channels = hidden * (2 + count) if spec.concat_intermediates else hidden * 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1)
        self.conv2 = ConvBNAct(in_channels, hidden, 1)
        self.conv3 = ConvBNAct(concat_channels, spec.out_channels, 1)
        self.bottlenecks = nn.Sequential(*(Bottleneck(hidden, repvgg) for _ in range(count)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        parts = [y] if self.concat_intermediates else []
        for block in self.bottlenecks:
            y = block(y)
            if self.concat_intermediates:
                parts.append(y)
        if not self.concat_intermediates:
            parts.append(y)
        parts.append(self.conv2(x))
        return self.conv3(torch.cat(parts, 1))


class Stem(nn.Module):
    """Stride-2 QARepVGG stem. [B,3,H,W] -> [B,C,H/2,W/2]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = QARepVGGBlock(in_channels, out_channels, stride=2, use_identity=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Stage(nn.Module):
    """Backbone stage: stride-2 QARepVGG downsample, then a QARepVGG CSP layer."""

    def __init__(self, in_channels: int, spec: StageSpec):
        super().__init__()
        self.downsample = QARepVGGBlock(in_channels, spec.out_channels, stride=2, use_identity=False)
        self.blocks = CSPLayer(spec.out_channels, spec, repvgg=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class SPP(nn.Module):
    """Spatial pyramid pooling: 1x1 conv to half width, parallel max-pools 5/9/13, concat, 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = ConvBNAct(in_channels, hidden, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in SPP_KERNELS)
        self.cv2 = ConvBNAct(hidden * (len(SPP_KERNELS) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x, *(pool(x) for pool in self.m)], 1))


class Backbone(nn.Module):
    """Stem, four stages, SPP. Returns [c2, c3, c4, c5] at strides 4, 8, 16, 32."""

    def __init__(self, arch: ArchSpec):
        super().__init__()
        self.stem = Stem(arch.in_channels, arch.stem_channels)
        widths = (arch.stem_channels, *(s.out_channels for s in arch.stages))
        stages = [Stage(cin, spec) for cin, spec in zip(widths, arch.stages)]
        self.stage1, self.stage2, self.stage3, self.stage4 = stages  # registered in this order
        self.context_module = SPP(widths[-1], arch.spp_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c2 = self.stage1(self.stem(x))
        c3 = self.stage2(c2)
        c4 = self.stage3(c3)
        c5 = self.context_module(self.stage4(c4))
        return [c2, c3, c4, c5]


# --------------------------------------------------------------------------------------------------------
# Neck
# --------------------------------------------------------------------------------------------------------
class UpStage(nn.Module):
    """Top-down PAN stage with two skips. (x, skip1, skip2) -> (x_inter, out).

    x_inter = conv(x); out = blocks(reduce_after_concat(cat[upsample(x_inter), reduce_skip1(skip1),
    downsample(reduce_skip2(skip2))])).
    """

    def __init__(self, in_channels: int, skip1_channels: int, skip2_channels: int, spec: StageSpec):
        super().__init__()
        out = spec.out_channels
        self.reduce_skip1 = ConvBNAct(skip1_channels, out, 1)
        self.reduce_skip2 = ConvBNAct(skip2_channels, out, 1)
        self.conv = ConvBNAct(in_channels, out, 1)
        self.upsample = nn.ConvTranspose2d(out, out, kernel_size=2, stride=2, bias=True)
        self.downsample = ConvBNAct(out, out, 3, stride=2)
        self.reduce_after_concat = ConvBNAct(out * 3, out, 1)
        self.blocks = CSPLayer(out, spec, repvgg=True)

    def forward(self, x: torch.Tensor, skip1: torch.Tensor, skip2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_inter = self.conv(x)
        merged = torch.cat(
            [self.upsample(x_inter), self.reduce_skip1(skip1), self.downsample(self.reduce_skip2(skip2))], 1
        )
        return x_inter, self.blocks(self.reduce_after_concat(merged))


class DownStage(nn.Module):
    """Bottom-up PAN stage. (x, skip) -> blocks(cat[conv3x3_s2(x), skip]) with Conv3x3 bottlenecks."""

    def __init__(self, in_channels: int, skip_channels: int, spec: StageSpec):
        super().__init__()
        half = spec.out_channels // 2
        self.conv = ConvBNAct(in_channels, half, 3, stride=2)
        self.blocks = CSPLayer(half + skip_channels, spec, repvgg=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(torch.cat([self.conv(x), skip], 1))


class Neck(nn.Module):
    """PAN neck with C2 input. [c2, c3, c4, c5] -> (p3, p4, p5) at strides 8, 16, 32."""

    def __init__(self, arch: ArchSpec):
        super().__init__()
        c2, c3, c4 = (s.out_channels for s in arch.stages[:3])
        n1, n2, n3, n4 = arch.necks
        self.neck1 = UpStage(arch.spp_channels, c4, c3, n1)
        self.neck2 = UpStage(n1.out_channels, c3, c2, n2)
        self.neck3 = DownStage(n2.out_channels, n2.out_channels, n3)
        self.neck4 = DownStage(n3.out_channels, n1.out_channels, n4)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c2, c3, c4, c5 = features
        n1_inter, x = self.neck1(c5, c4, c3)
        n2_inter, p3 = self.neck2(x, c3, c2)
        p4 = self.neck3(p3, n2_inter)
        p5 = self.neck4(p4, n1_inter)
        return p3, p4, p5


# --------------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------
class YoloNAS(nn.Module):
    """YOLO-NAS detector.

    forward(x): x float [B,3,H,W] RGB in [0,1], H and W multiples of 32 ->
    (boxes [B,N,4] xyxy in input pixels, scores [B,N,num_classes] after sigmoid), N = HW/64 + HW/256 + HW/1024.
    """

    def __init__(self, arch: ArchSpec):
        super().__init__()
        self.arch = arch
        self.backbone = Backbone(arch)
        self.neck = Neck(arch)
        neck_out = (arch.necks[1].out_channels, arch.necks[2].out_channels, arch.necks[3].out_channels)
        self.heads = DFLHeads(neck_out, arch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.neck(self.backbone(x)))

    def forward_train(self, x: torch.Tensor) -> TrainForward:
        """The training forward (use after `model.train()`): decoded boxes and the loss's raw outputs."""
        return self.heads.forward_train(self.neck(self.backbone(x)))

    def forward_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw head outputs: (cls_logits [B,N,C], reg_distri [B,N,4*(reg_max+1)])."""
        cls_logits, reg_distri, _, _ = self.heads.raw(self.neck(self.backbone(x)))
        return cls_logits, reg_distri


def build_model(arch: ArchSpec | str) -> YoloNAS:
    """A YOLO-NAS with untrained weights, in eval mode. `arch`: an ArchSpec or a VARIANTS name."""
    spec = VARIANTS[arch].arch if isinstance(arch, str) else arch
    return YoloNAS(spec).eval()


# --------------------------------------------------------------------------------------------------------
# Reading the architecture from a state dict
# --------------------------------------------------------------------------------------------------------
class ArchitectureError(ValueError):
    """The tensors do not describe a YOLO-NAS model."""


def arch_from_state_dict(shapes: Mapping[str, object]) -> ArchSpec:
    """The ArchSpec described by a YOLO-NAS state dict (values: tensors or shape tuples).

    Widths come from weight shapes, depths from the bottleneck indices, `concat_intermediates` from the
    input width of each CSP layer's conv3, the class count from `cls_pred`.
    """
    dims: dict[str, tuple[int, ...]] = {k: tuple(getattr(v, "shape", v)) for k, v in shapes.items()}  # type: ignore[arg-type]

    def shape(key: str) -> tuple[int, ...]:
        if key not in dims:
            raise ArchitectureError(f"missing tensor '{key}'")
        return dims[key]

    def stage(prefix: str) -> StageSpec:
        pattern = re.compile(re.escape(prefix) + r"\.bottlenecks\.(\d+)\.alpha$")
        count = len({m.group(1) for key in dims if (m := pattern.match(key))})
        if count == 0:
            raise ArchitectureError(f"no bottlenecks under '{prefix}'")
        hidden = shape(f"{prefix}.conv1.conv.weight")[0]
        out_channels, concat_in = shape(f"{prefix}.conv3.conv.weight")[:2]
        if concat_in not in (hidden * 2, hidden * (2 + count)):
            raise ArchitectureError(f"'{prefix}.conv3' takes {concat_in} channels, not a CSP concat of {hidden}")
        return StageSpec(out_channels, count, hidden, concat_in == hidden * (2 + count))

    stem_out, in_channels = shape("backbone.stem.conv.branch_3x3.conv.weight")[:2]
    reg_out = shape("heads.head1.reg_pred.weight")[0]
    if reg_out % 4:
        raise ArchitectureError(f"'heads.head1.reg_pred' has {reg_out} outputs, not a multiple of 4")
    return ArchSpec(
        stem_channels=stem_out,
        stages=tuple(stage(f"backbone.stage{i}.blocks") for i in range(1, 5)),  # type: ignore[arg-type]
        spp_channels=shape("backbone.context_module.cv2.conv.weight")[0],
        necks=tuple(stage(f"neck.neck{i}.blocks") for i in range(1, 5)),  # type: ignore[arg-type]
        head_channels=tuple(shape(f"heads.head{i}.stem.seq.conv.weight")[0] for i in range(1, 4)),  # type: ignore[arg-type]
        num_classes=shape("heads.head1.cls_pred.weight")[0],
        reg_max=reg_out // 4 - 1,
        in_channels=in_channels,
    )
