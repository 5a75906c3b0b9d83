"""One optimisation step, in the original trainer's order (training-facts.md §4, step 3):

    LR batch warmup -> forward and loss (under CUDA autocast when mixed precision is on) -> scaled backward ->
    scaler step (the optimizer step) -> scaler update -> zero_grad -> EMA update with t = b + 1 + Lp·e ->
    the decay scheduler writes the next step's rate.

Gradients start as None and `zero_grad` sets them back to None after each step (torch's default, as in the
original). `batch_accumulate` is 1 and no gradient clipping is done (no YOLO-NAS recipe sets either). The epoch
warmup (`LRScheduler.epoch_start`) belongs to the epoch, not to the step: the loop calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from yolonas_cli.model.yolo_nas import TrainForward, YoloNAS
from yolonas_cli.modes.train.ema import ModelEMA, optimizer_step_number
from yolonas_cli.modes.train.loss import PPYoloELoss
from yolonas_cli.modes.train.schedule import LRScheduler


class TrainingForward(nn.Module):
    """`model.forward_train` as a module's forward, so that DistributedDataParallel can wrap it.

    Input images float32 [B, 3, H, W] in [0, 1]; output `TrainForward` (decoded boxes and the loss's raw outputs).
    """

    def __init__(self, model: YoloNAS):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> TrainForward:
        return self.model.forward_train(images)


@dataclass
class StepParts:
    """Everything one optimisation step touches.

    `model` is the plain model (what the EMA averages); `forward` runs its training forward, wrapped in DDP under
    multi-process training. `autocast`: CUDA mixed precision (the scaler is enabled with it)."""

    model: YoloNAS
    forward: nn.Module
    loss: PPYoloELoss
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    ema: ModelEMA | None
    scaler: torch.amp.GradScaler
    autocast: bool
    steps_per_epoch: int


def optimisation_step(
    parts: StepParts, epoch: int, batch: int, images: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Train on one batch: images float32 [B, 3, H, W] in [0, 1], targets float32 [N, 6] (image index, class, cx,
    cy, w, h) in input pixels, both on the model's device. Returns the loss components [4] (loss_cls, loss_iou,
    loss_dfl, loss), detached, as the loss logs them."""
    parts.scheduler.batch_start(epoch, batch)
    with torch.autocast("cuda", enabled=parts.autocast):
        outputs = parts.forward(images)
        loss, components = parts.loss(outputs.raw, targets)
    parts.scaler.scale(loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.optimizer.zero_grad()
    if parts.ema is not None:
        parts.ema.update(parts.model, optimizer_step_number(epoch, batch, parts.steps_per_epoch))
    parts.scheduler.step_end(epoch, batch)
    return components
