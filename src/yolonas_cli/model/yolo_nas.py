"""YOLO-NAS (Deci, 2023): backbone, PAN neck and DFL heads, clean-room from the facts doc (sections 1-3).

Top-down: CSP stages -> backbone -> neck -> `YoloNAS` (the heads live in heads.py, the architecture records in
arch.py). Module attribute names reproduce the original checkpoints' state-dict keys exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from yolonas_cli.model.arch import (
    VARIANTS,
    ArchitectureError,
    ArchSpec,
    StageSpec,
    Variant,
    arch_from_state_dict,
    variant_name,
)
from yolonas_cli.model.blocks import ConvBNAct, QARepVGGBlock
from yolonas_cli.model.heads import STRIDES, DFLHeads, TrainForward, TrainOutputs, distances_to_boxes

__all__ = [  # the architecture records and the heads' types are re-exported: one import for model users
    "STRIDES",
    "VARIANTS",
    "ArchSpec",
    "ArchitectureError",
    "StageSpec",
    "TrainForward",
    "TrainOutputs",
    "Variant",
    "YoloNAS",
    "arch_from_state_dict",
    "build_model",
    "distances_to_boxes",
    "variant_name",
]

SPP_KERNELS = (5, 9, 13)


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
