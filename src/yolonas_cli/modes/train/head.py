"""Starting a fine-tune on another class count (training-facts.md §11), and weight transfer by name and shape.

The original builds the model with the checkpoint's class count, loads every tensor, and only then, if the
class count differs, replaces the three `heads.headN.cls_pred` convolutions with fresh ones whose weights are drawn
from `Normal(mean, std)` of the old weights and whose biases from `Normal(mean, std)` of the old biases (one scalar
mean and unbiased std over all elements), with torch's global random generator, head 1 to 3. Nothing else
changes: `reg_pred`, every BatchNorm statistic and every other weight keep their values, and the state dict keeps
its keys in the same order (only the six `cls_pred` tensors change shape). The prior-probability bias (−4.595) is
NOT re-applied. `replace_class_head` does exactly this; a fresh `Conv2d` is made first, as in the original, so the
random stream advances the same way (a given `torch.manual_seed` draws the same values as the original's).

`transfer_weights` is the general tool for a checkpoint that does not fit the model (another architecture width,
a partial file): it copies every tensor whose name and shape match and reports the rest. It is not the original's
path for a new class count - use `model_for_classes` for that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from yolonas_cli.core.errors import UsageError
from yolonas_cli.model.yolo_nas import YoloNAS, arch_from_state_dict, build_model

HEAD_NAMES = ("head1", "head2", "head3")


@dataclass(frozen=True)
class HeadReplacement:
    """What `replace_class_head` did: the class counts and which state-dict keys were drawn afresh or kept."""

    old_num_classes: int
    num_classes: int
    reinitialised: tuple[str, ...]  # the six cls_pred weight/bias keys (empty when the count did not change)
    kept: tuple[str, ...]  # every other state-dict key, value unchanged

    def summary(self) -> str:
        """One line for the console."""
        if not self.reinitialised:
            return f"{self.num_classes} classes: every tensor kept ({len(self.kept)})"
        return (
            f"{self.old_num_classes} -> {self.num_classes} classes: kept {len(self.kept)} tensors, "
            f"re-initialised {len(self.reinitialised)} ({', '.join(self.reinitialised)})"
        )


@dataclass(frozen=True)
class WeightTransfer:
    """What `transfer_weights` copied, and what it could not."""

    transferred: tuple[str, ...]  # copied: same name and shape
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, checkpoint shape, model shape)
    missing: tuple[str, ...]  # in the model, not in the checkpoint (left as they were)
    unexpected: tuple[str, ...]  # in the checkpoint, not in the model (ignored)

    @property
    def complete(self) -> bool:
        """True when every tensor of the model came from the checkpoint and nothing was left over."""
        return not (self.mismatched or self.missing or self.unexpected)

    def summary(self) -> str:
        """One line for the console."""
        total = len(self.transferred) + len(self.mismatched) + len(self.missing)
        parts = [f"transferred {len(self.transferred)}/{total} tensors"]
        if self.mismatched:
            shapes = ", ".join(f"{k} {list(a)} vs {list(b)}" for k, a, b in self.mismatched)
            parts.append(f"{len(self.mismatched)} of another shape kept as they were ({shapes})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing from the checkpoint ({', '.join(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} not in the model ignored ({', '.join(self.unexpected)})")
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------------------
# The original's head replacement
# --------------------------------------------------------------------------------------------------------
def replace_class_head(model: YoloNAS, num_classes: int) -> HeadReplacement:
    """Give `model` `num_classes` outputs per anchor as the original does (see the module docstring). In place.

    Draws from torch's global generator (seed it for reproducible heads). The new convs have the old ones'
    device, dtype and train/eval mode and require gradients.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"num_classes={num_classes!r} must be a positive integer")
    old = model.heads.num_classes
    keys = tuple(model.state_dict().keys())
    if num_classes == old:
        return HeadReplacement(old, num_classes, (), keys)
    for name in HEAD_NAMES:
        head = getattr(model.heads, name)
        head.cls_pred = _redrawn(head.cls_pred, num_classes)
    model.heads.num_classes = num_classes
    model.arch = dataclasses.replace(model.arch, num_classes=num_classes)
    drawn = tuple(f"heads.{name}.cls_pred.{leaf}" for name in HEAD_NAMES for leaf in ("weight", "bias"))
    return HeadReplacement(old, num_classes, drawn, tuple(k for k in keys if k not in drawn))


@torch.no_grad()
def _redrawn(old: nn.Conv2d, num_classes: int) -> nn.Conv2d:
    """A conv like `old` with `num_classes` outputs, weight ~ N(mean, std) of old.weight, bias likewise.

    weight [K, Cin, kh, kw], bias [K]; mean and unbiased std are float32 scalars over all elements.
    """
    new = nn.Conv2d(
        old.in_channels,
        num_classes,
        kernel_size=old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        dilation=old.dilation,  # type: ignore[arg-type]
        groups=old.groups,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    all_dims = tuple(range(old.weight.dim()))
    new.weight.normal_(old.weight.mean().item(), old.weight.std(dim=all_dims).item())
    if old.bias is not None and new.bias is not None:
        new.bias.normal_(old.bias.mean().item(), old.bias.std(dim=0).item())
    return new.train(old.training)


def model_for_classes(state: Mapping[str, torch.Tensor], num_classes: int) -> tuple[YoloNAS, HeadReplacement]:
    """The original's start point for `num_classes`: a model built from `state`'s architecture (its own class
    count), every tensor loaded, then `replace_class_head`. Returned in eval mode."""
    model = build_model(arch_from_state_dict(state))
    model.load_state_dict(dict(state))
    return model, replace_class_head(model, num_classes)


# --------------------------------------------------------------------------------------------------------
# Transfer by name and shape
# --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def transfer_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> WeightTransfer:
    """Copy into `model` every tensor of `state` whose name and shape match its own (cast to the model's dtype);
    everything else of the model keeps its value. Returns what was and was not transferred."""
    own = model.state_dict()
    transferred, mismatched = [], []
    for key, target in own.items():
        if key not in state:
            continue
        source = state[key]
        if tuple(source.shape) != tuple(target.shape):
            mismatched.append((key, tuple(source.shape), tuple(target.shape)))
            continue
        target.copy_(source)
        transferred.append(key)
    return WeightTransfer(
        transferred=tuple(transferred),
        mismatched=tuple(mismatched),
        missing=tuple(k for k in own if k not in state),
        unexpected=tuple(k for k in state if k not in own),
    )
