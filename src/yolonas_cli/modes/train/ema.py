"""The exponential moving average of the weights, as the original trainer keeps it (training-facts.md §7).

The EMA model is a deep copy of the training model made at the start of training (after any checkpoint loading
and head replacement), in eval mode and without gradients. After every optimizer step `t` (1-based, counted over
the whole run: `t = b + 1 + Lp·e`) every floating-point entry of its state dict - parameters AND BatchNorm running
statistics - becomes `ema·d + (1 − d)·model`; integer entries (`num_batches_tracked`) keep the value they had when
the copy was made. The decay `d` of step `t`:

| kind        | d                                                    | used by                      |
|-------------|------------------------------------------------------|------------------------------|
| `constant`  | `decay`                                              | -                            |
| `threshold` | `min(decay, (1 + t)/(10 + t))`                       | every YOLO-NAS recipe        |
| `exp`       | `decay·(1 − exp(−β·t/T))`, `T` = steps of the run    | -                            |

Validation, `best.pt` and the final model use the EMA weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from yolonas_cli.core.errors import UsageError

DECAY_KINDS = ("constant", "threshold", "exp")


@dataclass(frozen=True)
class EMADecay:
    """The EMA's decay rule (SG `ema_params`)."""

    decay: float = 0.9  # decay: the largest decay (0.9 fine-tuning recipes, 0.9997 COCO)
    kind: str = "threshold"  # decay_type: constant, threshold or exp
    beta: float = 15.0  # beta: steepness of the exp ramp (present in the recipes, unused by threshold)

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise UsageError(f"EMA decay={self.decay} must be in [0, 1)")
        if self.kind not in DECAY_KINDS:
            raise UsageError(f"EMA decay type {self.kind!r} must be one of {', '.join(DECAY_KINDS)}")


def optimizer_step_number(epoch: int, batch: int, steps_per_epoch: int) -> int:
    """The 1-based count `t` of the optimizer step of (epoch, batch) over the whole run: `b + 1 + Lp·e`."""
    return batch + 1 + steps_per_epoch * epoch


def ema_decay(step: int, total_steps: int, rule: EMADecay) -> float:
    """The decay of the EMA update after optimizer step `step` (1-based) of a run of `total_steps` steps.

    Equals the original's value exactly for `constant` and `threshold`; `exp` uses `math.exp` where the
    original uses `numpy.exp` (the two may differ in the last bit).
    """
    if rule.kind == "constant":
        return rule.decay
    if rule.kind == "threshold":
        return min(rule.decay, (1 + step) / (10 + step))
    return rule.decay * (1 - math.exp(-(step / total_steps) * rule.beta))


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel wrapper (the model itself otherwise)."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


class ModelEMA:
    """The averaged copy of a model. `ModelEMA(model, rule, total_steps)`; after each optimizer step call
    `update(model, t)`; `ema.model` is the averaged model (eval mode, no gradients). A DDP-wrapped model is
    unwrapped, so the EMA's keys never carry the `module.` prefix."""

    def __init__(self, model: nn.Module, rule: EMADecay, total_steps: int):
        if total_steps < 1:
            raise UsageError(f"total_steps={total_steps} must be >= 1")
        self.model = copy.deepcopy(unwrap(model)).eval()
        self.model.requires_grad_(False)
        self.rule, self.total_steps = rule, total_steps
        self.updates = 0  # the step number of the last update (0: never updated)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Average `model`'s state into the EMA after optimizer step `step` (1-based); returns the decay used.

        Same expression and operation order as the original, in the tensors' dtype:
        `ema ← ema·d + (1 − d)·model` for every floating state-dict entry, matched by name.
        """
        decay = ema_decay(step, self.total_steps, self.rule)
        source = unwrap(model).state_dict()
        target = self.model.state_dict()
        if source.keys() != target.keys():
            raise ValueError(
                "the model's state-dict keys differ from the EMA copy's (make the EMA after a head change)"
            )
        names = [name for name, tensor in target.items() if tensor.dtype.is_floating_point]
        averaged = [target[name] for name in names]
        current = [source[name].detach() for name in names]
        # One multi-tensor op per term instead of three kernels per tensor; the same three correctly rounded
        # operations (ema·d, (1 − d)·model, their sum) on every element, so the same bits as the per-tensor form.
        weighted = torch._foreach_mul(current, 1.0 - decay)
        torch._foreach_mul_(averaged, decay)
        torch._foreach_add_(averaged, weighted)
        self.updates = step
        return decay

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: the averaged weights, the rule, the run length and the last step."""
        return {
            "model": self.model.state_dict(),
            "rule": asdict(self.rule),
            "total_steps": self.total_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (the EMA model's architecture must already match)."""
        self.model.load_state_dict(state["model"])
        self.rule = EMADecay(**state["rule"])
        self.total_steps = int(state["total_steps"])
        self.updates = int(state["updates"])
