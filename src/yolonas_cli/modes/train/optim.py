"""The optimizer and its two parameter groups, built exactly as the original builds them (training-facts.md §5).

With `zero_weight_decay_on_bias_and_bn` (every YOLO-NAS recipe) the parameters are split into two groups, in
this order, each keeping `named_parameters()` order and carrying `name="default"` and the same learning rate:

- group 0, weight decay 0: the weight and bias of every normalisation layer (BatchNorm, GroupNorm, LayerNorm,
  InstanceNorm) and the `bias` Parameter of every other module. YOLO-NAS: every BatchNorm weight/bias,
  `branch_1x1.bias`, `rbr_reparam.bias`, `upsample.bias`, `cls_pred.bias`, `reg_pred.bias` (340 tensors);
- group 1, the recipe's weight decay: everything else - convolution weights (`rbr_reparam.weight` included) and
  the bottleneck `alpha` scalars (194 tensors).

The optimizer is torch's AdamW with torch's defaults (betas (0.9, 0.999), eps 1e-8, decoupled weight decay).
The `rbr_reparam.*` placeholders never receive a gradient in the unfused forward, so AdamW never changes them.

`freeze` (not in the original; Ultralytics' meaning) takes parameters out of training: an int N freezes the first
N layers of `LAYERS` (the model's 13 blocks in forward order), a list freezes the layers it names by index or
any parameters under the dotted name prefixes it gives. Frozen parameters get `requires_grad=False` and are left
out of both groups; BatchNorm layers inside frozen blocks still update their running statistics in train mode,
as in Ultralytics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
from torch import nn

from yolonas_cli.core.errors import UsageError

# The model's layers in forward order: what an integer `freeze` counts (the second level of the module tree).
LAYERS = (
    "backbone.stem",
    "backbone.stage1",
    "backbone.stage2",
    "backbone.stage3",
    "backbone.stage4",
    "backbone.context_module",
    "neck.neck1",
    "neck.neck2",
    "neck.neck3",
    "neck.neck4",
    "heads.head1",
    "heads.head2",
    "heads.head3",
)

NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)

Freeze = Union[int, Sequence[Union[int, str]], None]


@dataclass(frozen=True)
class ParamGroup:
    """One optimizer group: its parameter names in order and its weight decay."""

    names: tuple[str, ...]
    weight_decay: float


@dataclass(frozen=True)
class OptimizerKind:
    """How one Ultralytics optimizer name is built (`momentum` is beta1 for the Adam family)."""

    name: str
    build: Callable[[list[dict[str, Any]], float, float, float], torch.optim.Optimizer]  # (groups, lr, momentum, wd)


OPTIMIZERS: dict[str, OptimizerKind] = {
    kind.name.lower(): kind
    for kind in (
        # The recipes' optimizer; torch defaults otherwise (eps 1e-8, beta2 0.999, amsgrad off).
        OptimizerKind("AdamW", lambda g, lr, m, wd: torch.optim.AdamW(g, lr=lr, betas=(m, 0.999), weight_decay=wd)),
        # Not used by the original recipes; built as Ultralytics builds them.
        OptimizerKind("Adam", lambda g, lr, m, wd: torch.optim.Adam(g, lr=lr, betas=(m, 0.999), weight_decay=wd)),
        OptimizerKind(
            "SGD", lambda g, lr, m, wd: torch.optim.SGD(g, lr=lr, momentum=m, nesterov=True, weight_decay=wd)
        ),
    )
}


# --------------------------------------------------------------------------------------------------------
# Freezing
# --------------------------------------------------------------------------------------------------------
def frozen_prefixes(freeze: Freeze) -> tuple[str, ...]:
    """The dotted name prefixes `freeze` means: int N -> the first N of `LAYERS`; a list -> each int as an index
    into `LAYERS`, each str as given; None or 0 -> nothing."""
    if freeze is None:
        return ()
    if isinstance(freeze, bool) or not isinstance(freeze, (int, list, tuple)):
        raise UsageError(f"freeze={freeze!r} must be a layer count or a list of layer indices or name prefixes")
    if isinstance(freeze, int):
        if not 0 <= freeze <= len(LAYERS):
            raise UsageError(f"freeze={freeze} must be between 0 and {len(LAYERS)} (the model's layers)")
        return LAYERS[:freeze]
    return tuple(_layer_prefix(item) for item in freeze)


def _layer_prefix(item: int | str) -> str:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise UsageError(f"freeze entry {item!r} must be a layer index or a name prefix")
    if isinstance(item, int):
        if not 0 <= item < len(LAYERS):
            raise UsageError(f"freeze layer index {item} must be between 0 and {len(LAYERS) - 1}")
        return LAYERS[item]
    return item.strip(".")


def freeze_parameters(model: nn.Module, freeze: Freeze) -> tuple[str, ...]:
    """Set `requires_grad=False` on the parameters `freeze` selects (see `frozen_prefixes`) and True on all others;
    returns the frozen names in `named_parameters()` order. A prefix that matches nothing is a usage error."""
    prefixes = frozen_prefixes(freeze)
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_under(name, prefix) for name in names):
            raise UsageError(f"freeze: no parameter is '{prefix}' or under it; layers: {', '.join(LAYERS)}")
    frozen = []
    for name, param in model.named_parameters():
        is_frozen = any(_under(name, prefix) for prefix in prefixes)
        param.requires_grad_(not is_frozen)
        if is_frozen:
            frozen.append(name)
    return tuple(frozen)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# --------------------------------------------------------------------------------------------------------
# Groups and the optimizer
# --------------------------------------------------------------------------------------------------------
def no_decay_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the parameters that get no weight decay: norm-layer weights and biases, every other bias."""
    ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            ids.update(id(p) for p in (module.weight, module.bias) if isinstance(p, nn.Parameter))
        elif isinstance(getattr(module, "bias", None), nn.Parameter):
            ids.add(id(module.bias))
    return ids


def parameter_groups(
    model: nn.Module, weight_decay: float, zero_decay_on_bias_and_norm: bool = True
) -> list[ParamGroup]:
    """The groups the original builds, by name: [no decay, decay] (or one group with `weight_decay` for all when
    `zero_decay_on_bias_and_norm` is False). Parameters with `requires_grad=False` (frozen) are left out."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not zero_decay_on_bias_and_norm:
        return [ParamGroup(tuple(name for name, _ in trainable), weight_decay)]
    no_decay = no_decay_parameter_ids(model)
    return [
        ParamGroup(tuple(name for name, p in trainable if id(p) in no_decay), 0.0),
        ParamGroup(tuple(name for name, p in trainable if id(p) not in no_decay), weight_decay),
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    optimizer: str = "AdamW",
    momentum: float = 0.9,
    zero_decay_on_bias_and_norm: bool = True,
    freeze: Freeze = None,
) -> torch.optim.Optimizer:
    """The original's optimizer for `model`: `parameter_groups` as torch groups (`params`, `weight_decay`, `lr`,
    `name="default"`), created with `lr`. `optimizer` is AdamW (the recipes; 'auto' means it too), Adam or SGD;
    `momentum` is beta1 for AdamW/Adam (0.9 = torch's default) and the momentum for SGD. `freeze` is applied to
    `model` first (see `freeze_parameters`)."""
    kind = OPTIMIZERS.get("adamw" if optimizer.lower() == "auto" else optimizer.lower())
    if kind is None:
        known = ", ".join(k.name for k in OPTIMIZERS.values())
        raise UsageError(f"optimizer={optimizer!r} is not supported; use auto, {known}")
    if lr <= 0 or weight_decay < 0 or not 0 <= momentum < 1:
        raise UsageError(f"need lr > 0, weight_decay >= 0 and 0 <= momentum < 1 (got {lr}, {weight_decay}, {momentum})")
    freeze_parameters(model, freeze)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in group.names], "weight_decay": group.weight_decay, "lr": lr, "name": "default"}
        for group in parameter_groups(model, weight_decay, zero_decay_on_bias_and_norm)
    ]
    return kind.build(groups, lr, momentum, weight_decay)


def group_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[list[str]]:
    """The parameter names of each group of `optimizer` (for reports and tests)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
