"""The learning rate of every optimizer step, exactly as the original trainer sets it (training-facts.md §4, §6).

The original writes the learning rate into every parameter group at three points of the loop, and between two
writes the rate simply stays what it was:

1. epoch start   - LinearEpochLRWarmup (`warmup="epoch"`, the fine-tuning recipes): `w0 + e·(lr0 − w0)/We` for
                   epochs `e <= We`;
2. batch start   - LinearBatchLRWarmup (`warmup="batch"`, the COCO recipe): `linspace(w0, lr0, n)[g]` for global
                   steps `g < n = min(Ws, steps per epoch)` (the ramp is capped to one epoch);
3. after a step  - CosineLRScheduler: the rate of the NEXT step, `lr0·[ρ + (1 − ρ)·½(1 + cos(π·k/(K + 1)))]`
                   with `k = max(0, Lp·(e − We) + b − Ws)` and `K = Lp·(E − We − Cd) − Ws`, once enabled
                   (`g >= Ws` when `Ws > 0`, else `We <= e < E − Cd`).

`lr_at` folds the three into one pure function of (epoch, batch index, steps per epoch, schedule): it finds the
last write before the step and evaluates it, so any step's rate can be computed without replaying the run.
`LRScheduler` is the small stateful side the loop calls at the three points; both give the same numbers.

`Ws` (`warmup_steps`, SG's `lr_warmup_steps`) does double duty, which is the original's quirk: the fine-tuning
recipes inherit `lr_warmup_steps: 1000` from the COCO recipe, so with the epoch warmup the cosine stays off until
global step 1000 and its progress `k` stays 0 until step `1000 + We·Lp`: a short fine-tune never decays its
learning rate. `warmup_steps` is an explicit parameter so that the quirk is reproduced when a recipe says so and
can be switched off (`warmup_steps=0`: the cosine starts right after the epoch warmup).

Exactness: every rate is the original's bit for bit, except that the cosine uses `math.cos` where the original
calls `numpy.cos`; the reference run's numpy (1.23, AVX-512 SVML kernel) was a few ulp off the correctly rounded
cosine, so cosine-written rates can differ from it by up to 3 ulp (measured on the fixture).

`decay="linear"` is NOT in the original: a straight line from `lr0` to `ρ·lr0` with the same timing and the same
progress `k/(K + 1)`, so that Ultralytics' `cos_lr=False` has a meaning. Ultralytics' own warmup (a separate bias
learning rate and a momentum warmup, per-group rates) is not offered: it would need per-group schedules that the
original does not have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from yolonas_cli.core.errors import UsageError

WARMUPS = ("epoch", "batch", None)
DECAYS = ("cosine", "linear", None)


@dataclass(frozen=True)
class LRSchedule:
    """Every number the learning-rate schedule depends on (SG training-parameter names in the comments)."""

    lr0: float  # initial_lr: the peak rate, also the rate the optimizer is created with
    epochs: int  # max_epochs (E)
    warmup: str | None = "epoch"  # warmup_mode: "epoch" (LinearEpochLRWarmup), "batch" (LinearBatchLRWarmup), None
    warmup_epochs: int = 0  # lr_warmup_epochs (We); also shifts the cosine's start
    warmup_steps: int = 0  # lr_warmup_steps (Ws): batch-warmup length, cosine delay and cosine offset (see above)
    warmup_initial_lr: float | None = None  # warmup_initial_lr (w0); None: lr0/(We + 1) for the epoch warmup
    final_lr_ratio: float = 0.1  # cosine_final_lr_ratio (ρ): the decay ends near ρ·lr0
    cooldown_epochs: int = 0  # lr_cooldown_epochs (Cd)
    decay: str | None = "cosine"  # lr_mode: "cosine" (CosineLRScheduler), "linear" (not in SG), None (constant)

    def __post_init__(self) -> None:
        _check(self.lr0 > 0, f"lr0={self.lr0} must be > 0")
        _check(self.epochs >= 1, f"epochs={self.epochs} must be >= 1")
        _check(self.warmup in WARMUPS, f"warmup={self.warmup!r} must be one of {WARMUPS}")
        _check(self.decay in DECAYS, f"decay={self.decay!r} must be one of {DECAYS}")
        _check(self.warmup_epochs >= 0, f"warmup_epochs={self.warmup_epochs} must be >= 0")
        _check(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps} must be >= 0")
        _check(self.cooldown_epochs >= 0, f"cooldown_epochs={self.cooldown_epochs} must be >= 0")
        _check(0.0 <= self.final_lr_ratio <= 1.0, f"final_lr_ratio={self.final_lr_ratio} must be in [0, 1]")
        _check(
            self.warmup != "batch" or self.warmup_initial_lr is not None,
            "warmup='batch' needs warmup_initial_lr (the original requires it too)",
        )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


# --------------------------------------------------------------------------------------------------------
# The three writers
# --------------------------------------------------------------------------------------------------------
def epoch_warmup_lr(epoch: int, schedule: LRSchedule) -> float | None:
    """The rate LinearEpochLRWarmup writes at the start of `epoch` (0-based), or None when it writes nothing."""
    epochs = schedule.warmup_epochs
    if schedule.warmup != "epoch" or epochs <= 0 or epoch > epochs:
        return None
    start = schedule.warmup_initial_lr
    if start is None:
        start = schedule.lr0 / (epochs + 1)
    return start + epoch * ((schedule.lr0 - start) / epochs)


def batch_warmup_length(steps_per_epoch: int, schedule: LRSchedule) -> int:
    """How many steps LinearBatchLRWarmup ramps over: `min(Ws, steps per epoch)`, 0 without a batch warmup."""
    if schedule.warmup != "batch":
        return 0
    return min(schedule.warmup_steps, steps_per_epoch)


def batch_warmup_lr(step: int, steps_per_epoch: int, schedule: LRSchedule) -> float | None:
    """The rate LinearBatchLRWarmup writes before global step `step` (0-based), or None.

    Equal, bit for bit, to element `step` of `numpy.linspace(w0, lr0, n)` (`i·((lr0 − w0)/(n − 1)) + w0`, the
    last element exactly lr0).
    """
    length = batch_warmup_length(steps_per_epoch, schedule)
    if step >= length:
        return None
    start = float(schedule.warmup_initial_lr)  # type: ignore[arg-type]  # checked in LRSchedule
    if step == length - 1 and length > 1:
        return schedule.lr0
    if length == 1:
        return start
    return step * ((schedule.lr0 - start) / (length - 1)) + start


def decay_enabled(epoch: int, batch: int, steps_per_epoch: int, schedule: LRSchedule) -> bool:
    """Whether the decay scheduler writes a rate after the step (epoch, batch)."""
    if schedule.decay is None:
        return False
    if schedule.warmup_steps > 0:
        return steps_per_epoch * epoch + batch >= schedule.warmup_steps
    return schedule.warmup_epochs <= epoch < schedule.epochs - schedule.cooldown_epochs


def decay_progress(epoch: int, batch: int, steps_per_epoch: int, schedule: LRSchedule) -> tuple[int, int]:
    """(k, K): the decay's step and its length as the original computes them after the step (epoch, batch)."""
    k = max(0, steps_per_epoch * (epoch - schedule.warmup_epochs) + batch - schedule.warmup_steps)
    total = steps_per_epoch * (schedule.epochs - schedule.warmup_epochs - schedule.cooldown_epochs)
    return k, total - schedule.warmup_steps


def decay_lr_after(epoch: int, batch: int, steps_per_epoch: int, schedule: LRSchedule) -> float | None:
    """The rate the decay scheduler writes after the step (epoch, batch) for the next step, or None."""
    if not decay_enabled(epoch, batch, steps_per_epoch, schedule):
        return None
    k, total = decay_progress(epoch, batch, steps_per_epoch, schedule)
    # Without cooldown k <= K − 1 on every step, so k = 0 whenever K + 1 <= 0. The guard only matters for a
    # cooldown run with lr_warmup_steps where K + 1 = 0 and k > 0: the original raises ZeroDivisionError there.
    progress = k / (total + 1) if k and total + 1 else 0.0
    lr0, ratio = schedule.lr0, schedule.final_lr_ratio
    if schedule.decay == "linear":
        return lr0 * (ratio + (1.0 - ratio) * (1.0 - progress))
    # Same operation order as the original (float64 throughout).
    cosine = 0.5 * lr0 * (1.0 + math.cos(progress * math.pi))
    return cosine * (1 - ratio) + (lr0 * ratio)


# --------------------------------------------------------------------------------------------------------
# The pure function
# --------------------------------------------------------------------------------------------------------
def lr_at(epoch: int, batch: int, steps_per_epoch: int, schedule: LRSchedule) -> float:
    """The learning rate the optimizer step of (epoch, batch) uses (both 0-based; every group has the same rate).

    Writes are ordered in time as: epoch start of step g (time 2g − ½), batch start of g (2g), after step g
    (2g + 1). The rate of step g is the value of the last write before it; with none, lr0 (the optimizer's
    creation rate). Closed form, no replay.
    """
    _check(steps_per_epoch >= 1, f"steps_per_epoch={steps_per_epoch} must be >= 1")
    step = steps_per_epoch * epoch + batch
    writes: list[tuple[float, Callable[[], float | None]]] = []

    length = batch_warmup_length(steps_per_epoch, schedule)
    if length:
        last = min(step, length - 1)
        writes.append((2.0 * last, lambda: batch_warmup_lr(last, steps_per_epoch, schedule)))
    if schedule.warmup == "epoch" and schedule.warmup_epochs > 0:
        warm_epoch = min(epoch, schedule.warmup_epochs)
        writes.append((2.0 * steps_per_epoch * warm_epoch - 0.5, lambda: epoch_warmup_lr(warm_epoch, schedule)))
    decayed = _last_decay_write(step, steps_per_epoch, schedule)
    if decayed is not None:
        after_epoch, after_batch = divmod(decayed, steps_per_epoch)
        writes.append((2.0 * decayed + 1, lambda: decay_lr_after(after_epoch, after_batch, steps_per_epoch, schedule)))

    if not writes:
        return schedule.lr0
    value = max(writes, key=lambda write: write[0])[1]()
    assert value is not None  # every write above is one that happens
    return value


def _last_decay_write(step: int, steps_per_epoch: int, schedule: LRSchedule) -> int | None:
    """The last global step before `step` after which the decay scheduler wrote a rate, or None."""
    if schedule.decay is None or step == 0:
        return None
    if schedule.warmup_steps > 0:
        return step - 1 if step - 1 >= schedule.warmup_steps else None
    first = steps_per_epoch * schedule.warmup_epochs
    last = min(step - 1, steps_per_epoch * (schedule.epochs - schedule.cooldown_epochs) - 1)
    return last if last >= first else None


# --------------------------------------------------------------------------------------------------------
# The stateful side, for the loop
# --------------------------------------------------------------------------------------------------------
class LRScheduler:
    """Writes the schedule's rates into every group of `optimizer` at the loop's three points (§4):

        for epoch: sched.epoch_start(epoch)
            for batch: sched.batch_start(epoch, batch); forward/backward/step; EMA; sched.step_end(epoch, batch)

    It keeps no state of its own: the current rate lives in the optimizer's groups (and so in its state dict),
    which is all a resumed run needs.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, steps_per_epoch: int):
        _check(steps_per_epoch >= 1, f"steps_per_epoch={steps_per_epoch} must be >= 1")
        self.optimizer, self.schedule, self.steps_per_epoch = optimizer, schedule, steps_per_epoch

    @property
    def lr(self) -> float:
        """The rate the next optimizer step will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    def epoch_start(self, epoch: int) -> None:
        """Call before the first batch of `epoch`."""
        self._write(epoch_warmup_lr(epoch, self.schedule))

    def batch_start(self, epoch: int, batch: int) -> None:
        """Call before the forward pass of (epoch, batch)."""
        self._write(batch_warmup_lr(self.steps_per_epoch * epoch + batch, self.steps_per_epoch, self.schedule))

    def step_end(self, epoch: int, batch: int) -> None:
        """Call after the optimizer step and the EMA update of (epoch, batch)."""
        self._write(decay_lr_after(epoch, batch, self.steps_per_epoch, self.schedule))

    def _write(self, lr: float | None) -> None:
        if lr is None:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr
