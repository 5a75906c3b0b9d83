"""Time one optimisation step of `yolo-nas train` (forward, loss, backward, AdamW, EMA, learning-rate writes: the
loop's `step.optimisation_step`) for YOLO-NAS S at 640x640, batch 8, on this machine.

Self-contained: the fixture formula weights of S (read from the fixture data files; the real weights run at the
same speed), random images and 5 random boxes per image (the loss's work grows with the boxes only a little).
Prints the median and spread of the whole step over the timed steps, and, measured separately on the same
batch, the forward pass, the loss, the backward pass and optimizer + EMA.

    python scripts/train_step_speed.py [--variant s] [--imgsz 640] [--batch 8] [--steps 5] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from yolonas_cli.model.yolo_nas import arch_from_state_dict, build_model
from yolonas_cli.modes.train.ema import ModelEMA
from yolonas_cli.modes.train.loss import PPYoloELoss
from yolonas_cli.modes.train.optim import build_optimizer
from yolonas_cli.modes.train.recipe import ROBOFLOW_S
from yolonas_cli.modes.train.schedule import LRScheduler
from yolonas_cli.modes.train.step import StepParts, TrainingForward, optimisation_step
from yolonas_cli.weights.synthetic import synthetic_torch_state_dict_from_files

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # data files: key lists, BatchNorm stats


def batch(size: int, imgsz: int, boxes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images [B, 3, imgsz, imgsz] and `boxes` random targets per image [B*boxes, 6]."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(size, 3, imgsz, imgsz, generator=generator)
    count = size * boxes
    centres = torch.rand(count, 2, generator=generator) * imgsz * 0.6 + imgsz * 0.2
    sides = torch.rand(count, 2, generator=generator) * imgsz * 0.3 + 16
    index = torch.arange(size).repeat_interleave(boxes).float()[:, None]
    classes = torch.randint(0, 80, (count, 1), generator=generator).float()
    return images, torch.cat([index, classes, centres, sides], 1)


def parts_for(variant: str, steps_per_epoch: int) -> StepParts:
    state = synthetic_torch_state_dict_from_files(
        FIXTURES / "keys" / f"yolo_nas_{variant}.keys", FIXTURES / f"yolo_nas_{variant}_bnstats.npz"
    )
    model = build_model(arch_from_state_dict(state))
    model.load_state_dict(state)
    model.train()
    recipe = ROBOFLOW_S
    optimizer = build_optimizer(model, recipe.lr0, recipe.weight_decay)
    rule = recipe.ema_rule()
    assert rule is not None
    return StepParts(
        model=model,
        forward=TrainingForward(model),
        loss=PPYoloELoss(model.arch.num_classes, use_static_assigner=False),
        optimizer=optimizer,
        scheduler=LRScheduler(optimizer, recipe.lr_schedule(), steps_per_epoch),
        ema=ModelEMA(model, rule, steps_per_epoch * recipe.epochs),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        autocast=False,
        steps_per_epoch=steps_per_epoch,
    )


def stages(parts: StepParts, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Seconds of each stage of one step, timed one after the other."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    outputs = parts.forward(images)
    times["forward"] = time.perf_counter() - start
    start = time.perf_counter()
    loss, _ = parts.loss(outputs.raw, targets)
    times["loss"] = time.perf_counter() - start
    start = time.perf_counter()
    loss.backward()
    times["backward"] = time.perf_counter() - start
    start = time.perf_counter()
    parts.optimizer.step()
    parts.optimizer.zero_grad()
    if parts.ema is not None:
        parts.ema.update(parts.model, 1)
    times["optimizer + EMA"] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one untimed)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    parts = parts_for(options.variant, steps_per_epoch=1000)
    images, targets = batch(options.batch, options.imgsz, 5)
    optimisation_step(parts, 0, 0, images, targets)  # warm-up: allocations, oneDNN kernel choice
    seconds = []
    for index in range(options.steps):
        start = time.perf_counter()
        optimisation_step(parts, 0, index + 1, images, targets)
        seconds.append(time.perf_counter() - start)
    split = stages(parts, images, targets)
    median = statistics.median(seconds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"YOLO-NAS {options.variant.upper()} at {options.imgsz}, batch {options.batch}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}: one optimisation step {median:.2f} s median "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f} over {len(seconds)}), {options.batch / median:.2f} img/s"
    )
    print("stages: " + ", ".join(f"{name} {value:.2f} s" for name, value in split.items()))
    print(f"peak memory: {peak:.0f} MB resident")


if __name__ == "__main__":
    main()
