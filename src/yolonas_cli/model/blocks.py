"""Building blocks of YOLO-NAS and their re-parameterisation (inference-time fusion).

Attribute names and registration order follow the original SuperGradients modules, because the state-dict
keys of the official checkpoints are an API we must match (see the facts doc, sections 2 and 4):

- `ConvBNAct`   conv(bias=False) -> BatchNorm -> ReLU              keys `conv.*`, `bn.*`
- `ConvBNReLU`  the same wrapped in `seq` (head convolutions)       keys `seq.conv.*`, `seq.bn.*`
- `QARepVGGBlock` (arXiv 2212.01593, variant S4): 3x3 conv+BN, 1x1 conv with bias, optional identity,
  summed, then a post-BN and ReLU. Keys `branch_3x3.*`, `branch_1x1.*`, `post_bn.*`, `rbr_reparam.*`
  (the last is a placeholder conv that only fusion fills).

Every block that can be fused owns an idempotent `reparameterize()`; `reparameterize_model` walks a model
and calls it on each. All BatchNorm layers use eps 1e-3 as in the original.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

#: A QARepVGG block's state: branches as trained, branches folded before the post-BN, or all folded.
Fusion = Literal["none", "partial", "full"]

BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm2d with the original's eps (1e-3) and momentum (0.03)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a convolution into that convolution.

    weight: [out, in/groups, kh, kw]; bias: [out] or None. Returns (weight', bias') such that
    conv(x, weight', bias') == bn(conv(x, weight, bias)). Computed in float64, returned in weight's dtype.
    """
    mean, var = cast(torch.Tensor, bn.running_mean), cast(torch.Tensor, bn.running_var)
    std = (var.double() + bn.eps).sqrt()
    scale = bn.weight.double() / std
    conv_bias = torch.zeros_like(scale) if bias is None else bias.double()
    fused_weight = weight.double() * scale.reshape(-1, 1, 1, 1)
    fused_bias = (conv_bias - mean.double()) * scale + bn.bias.double()
    return fused_weight.to(weight.dtype), fused_bias.to(weight.dtype)


def _conv_with(weight: torch.Tensor, bias: torch.Tensor, like: nn.Conv2d) -> nn.Conv2d:
    """A Conv2d with `like`'s geometry (stride, padding, dilation, groups) holding the given weight and bias."""
    geometry: dict[str, Any] = dict(
        kernel_size=like.kernel_size,
        stride=like.stride,
        padding=like.padding,
        dilation=like.dilation,
        groups=like.groups,
    )
    conv = nn.Conv2d(like.in_channels, like.out_channels, bias=True, **geometry)
    conv = conv.to(device=weight.device, dtype=weight.dtype)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)  # type: ignore[union-attr]
    return conv


class ConvBNAct(nn.Module):
    """Conv2d(k, stride, padding k//2, bias=False) -> BatchNorm -> ReLU.  [B,Cin,H,W] -> [B,Cout,H/s,W/s].

    After `reparameterize()` the BatchNorm is folded into the convolution (which gains a bias).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
        self.bn: nn.BatchNorm2d | None = batch_norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold `bn` into `conv`. Idempotent."""
        if self.bn is None:
            return
        self.conv = _conv_with(*fold_bn(self.conv.weight, self.conv.bias, self.bn), like=self.conv)
        self.bn = None


class ConvBNReLU(nn.Module):
    """The head's Conv-BN-ReLU: the same maths as `ConvBNAct`, with the layers inside `seq`."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1):
        super().__init__()
        self.seq = nn.Sequential()
        self.seq.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2, bias=False))
        self.seq.add_module("bn", batch_norm(out_channels))
        self.seq.add_module("act", nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold `seq.bn` into `seq.conv`. Idempotent."""
        if not hasattr(self.seq, "bn"):
            return
        conv, bn = cast(nn.Conv2d, self.seq.conv), cast(nn.BatchNorm2d, self.seq.bn)
        fused = _conv_with(*fold_bn(conv.weight, conv.bias, bn), like=conv)
        self.seq = nn.Sequential()
        self.seq.add_module("conv", fused)
        self.seq.add_module("act", nn.ReLU(inplace=True))


class Residual(nn.Module):
    """Identity placeholder (the original's skip-connection marker; no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class QARepVGGBlock(nn.Module):
    """Quantisation-aware RepVGG block. [B,Cin,H,W] -> [B,Cout,H/stride,W/stride].

    Unfused:          relu(post_bn(bn(conv3x3(x)) + conv1x1(x) + x))   (identity only when Cin == Cout, stride 1)
    Fused:            relu(rbr_reparam(x))                             (one 3x3 conv with bias)
    Partially fused:  relu(post_bn(rbr_reparam(x)))                    (the original's predict in SG >= 3.5;
                      here only for the benchmark's reference row, `partially_reparameterize`)
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, use_identity: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.nonlinearity = nn.ReLU(inplace=True)
        self.branch_3x3: nn.Sequential | None = nn.Sequential()
        self.branch_3x3.add_module("conv", nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False))
        self.branch_3x3.add_module("bn", batch_norm(out_channels))
        self.branch_1x1: nn.Conv2d | None = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=True)
        has_identity = use_identity and in_channels == out_channels and stride == 1
        self.identity: Residual | None = Residual() if has_identity else None
        self.post_bn: nn.BatchNorm2d | None = batch_norm(out_channels)
        self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
        self.fusion: Fusion = "none"  # "partial" or "full" once folded (one state, so never contradictory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "full":
            return self.nonlinearity(self.rbr_reparam(x))
        if self.fusion == "partial":
            assert self.post_bn is not None
            return self.nonlinearity(self.post_bn(self.rbr_reparam(x)))
        assert self.branch_3x3 is not None and self.branch_1x1 is not None and self.post_bn is not None
        # Same operation order as the original: (3x3 + 1x1) + identity.
        summed = self.branch_3x3(x) + self.branch_1x1(x)
        if self.identity is not None:
            summed = summed + self.identity(x)
        return self.nonlinearity(self.post_bn(summed))

    @property
    def fused(self) -> bool:
        """Fully fused: one 3x3 convolution with bias."""
        return self.fusion == "full"

    @property
    def partially_fused(self) -> bool:
        """Partially fused: one 3x3 convolution, then the post-BN."""
        return self.fusion == "partial"

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel [Cout,Cin,3,3] and bias [Cout] equal to the whole unfused block before ReLU."""
        assert self.post_bn is not None
        if self.fusion == "partial":
            return fold_bn(self.rbr_reparam.weight.double(), self.rbr_reparam.bias.double(), self.post_bn)  # type: ignore[union-attr]
        return fold_bn(*self.branches_kernel_bias(), self.post_bn)

    def branches_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias (float64) equal to the sum of the branches, before the post-BN."""
        assert self.branch_3x3 is not None and self.branch_1x1 is not None
        conv3, bn3 = cast(nn.Conv2d, self.branch_3x3.conv), cast(nn.BatchNorm2d, self.branch_3x3.bn)
        kernel, bias = fold_bn(conv3.weight, None, bn3)
        kernel = kernel.double() + F.pad(self.branch_1x1.weight.double(), [1, 1, 1, 1])
        bias = bias.double() + self.branch_1x1.bias.double()  # type: ignore[union-attr]
        if self.identity is not None:
            eye = torch.zeros_like(kernel)
            channels = torch.arange(self.in_channels, device=kernel.device)
            eye[channels, channels, 1, 1] = 1.0
            kernel = kernel + eye
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every branch and the post-BN into `rbr_reparam` and drop the branches. Idempotent."""
        if self.fusion == "full":
            return
        self._load_reparam(*self.equivalent_kernel_bias())
        self.branch_3x3 = self.branch_1x1 = self.identity = self.post_bn = None
        self.fusion = "full"

    @torch.no_grad()
    def partially_reparameterize(self) -> None:
        """Fold the branches into `rbr_reparam` and keep the post-BN (the original's partial fusion, as its
        predict runs the model in SG >= 3.5). Idempotent; a fused block stays fused."""
        if self.fusion != "none":
            return
        self._load_reparam(*self.branches_kernel_bias())
        self.branch_3x3 = self.branch_1x1 = self.identity = None
        self.fusion = "partial"

    def _load_reparam(self, kernel: torch.Tensor, bias: torch.Tensor) -> None:
        dtype = self.rbr_reparam.weight.dtype
        self.rbr_reparam.weight.data.copy_(kernel.to(dtype))
        self.rbr_reparam.bias.data.copy_(bias.to(dtype))  # type: ignore[union-attr]


def partially_reparameterize_model(model: nn.Module) -> nn.Module:
    """The original's partial fusion of `model` (eval mode): every QARepVGG block's branches folded into one
    3x3 convolution with bias, its post-BN and every other BatchNorm kept. In place; returns it."""
    for module in model.modules():
        if isinstance(module, QARepVGGBlock):
            module.partially_reparameterize()
    return model


def reparameterize_model(model: nn.Module) -> nn.Module:
    """Fuse every block of `model` that has `reparameterize()` (QARepVGG, Conv-BN pairs). In place; returns it.

    Call on a model in eval mode: the BatchNorm running statistics are folded in.
    """
    for module in list(model.modules()):
        fuse = getattr(module, "reparameterize", None)
        if module is not model and callable(fuse):
            fuse()
    return model
