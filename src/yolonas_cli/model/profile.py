"""Static model statistics: parameter counts, layer counts and FLOPs, without running real data.

FLOPs are counted as 2 x multiply-adds of every convolution and transposed convolution executed by one
forward pass (the usual convention; pooling, activations and the DFL decode are not counted). The
pass runs on PyTorch's `meta` device, so it costs no memory and no arithmetic.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (placeholders such as `rbr_reparam` in an unfused model included)."""
    return sum(p.numel() for p in model.parameters())


def count_layers(model: nn.Module) -> int:
    """Number of layers that hold weights (convolutions, transposed convolutions, batch norms)."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)
    return sum(isinstance(m, kinds) for m in model.modules())


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs (2 x MACs) of one forward pass of a [1,3,height,width] input."""
    meta_model = copy.deepcopy(model).to("meta")
    macs = [0]

    def conv_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        assert isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
        kernel = int(module.weight.shape[2] * module.weight.shape[3])
        if isinstance(module, nn.ConvTranspose2d):
            macs[0] += inputs[0].numel() * module.out_channels // module.groups * kernel
        else:
            macs[0] += output.numel() * module.in_channels // module.groups * kernel

    hooks = [
        m.register_forward_hook(conv_hook)
        for m in meta_model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        with torch.no_grad():
            meta_model(torch.empty(1, 3, height, width, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return 2 * macs[0]


def variant_flops(name: str, num_classes: int, height: int, width: int) -> int | None:
    """FLOPs of the fused YOLO-NAS `name` ('yolo_nas_s', ...) with `num_classes` classes on one
    [1,3,height,width] input, built on the meta device (no weights needed); None for a name not in the table."""
    import dataclasses

    from yolonas_cli.model.blocks import reparameterize_model
    from yolonas_cli.model.yolo_nas import VARIANTS, YoloNAS

    if name not in VARIANTS:
        return None
    with torch.device("meta"):
        model = YoloNAS(dataclasses.replace(VARIANTS[name].arch, num_classes=num_classes)).eval()
        reparameterize_model(model)
    return count_flops(model, height, width)
