"""`yolo-nas train`: fine-tune YOLO-NAS as the original trainer does (training-facts.md), resumable and
multi-process.

    yolo-nas train model=yolo_nas_s.pt data=my.yaml epochs=100 imgsz=640 batch=16

The package, top-down: `trainer.py` (the run and its epochs) over `prepare.py` (everything before the first
step) and `step.py` (one optimisation step); `data.py`, `pipelines.py`, `augment.py`, `cache.py` (the data);
`loss.py`, `assigners.py` (the loss); `optim.py`, `schedule.py`, `ema.py` (optimizer, learning rate, EMA);
`recipe.py` (the recipes and the Ultralytics names); `start.py`, `head.py` (start points and class heads);
`checkpoints.py`, `outputs.py` (what a run writes); `distributed.py`, `signals.py` (several processes, stopping
cleanly).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from yolonas_cli.cfg import TrainArgs
from yolonas_cli.core.checks import format_value
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.data.sinks import make_run_dir

__all__ = ["run", "train"]


def run(args: TrainArgs) -> int:
    """`yolo-nas train`: train as `args` says; exit code 0 (TrainingInterrupted carries 130)."""
    train(args)
    return 0


def train(args: TrainArgs) -> Any:
    """Train in this process, or, for several devices (`device=0,1`) outside torchrun, in one process per device
    started through torchrun. Returns the `trainer.TrainResult`."""
    from yolonas_cli.modes.train import distributed, trainer

    devices = args.device.split(",")
    if len(devices) == 1 or distributed.Distributed.from_environment().enabled:
        return trainer.train(args)
    check_gpus(devices)
    folder = make_run_dir(args.project, args.name, args.exist_ok, "train", create=True)
    children = dataclasses.replace(args, project=str(folder.parent), name=folder.name, exist_ok=True)
    code = distributed.run_processes(len(devices), argument_tokens(children))
    if code != 0:
        raise YoloNasError(
            f"the {len(devices)} training processes ended with exit code {code} (their messages are above)"
        )
    weights = folder / "weights"
    return trainer.TrainResult(None, weights / "best.pt", weights / "last.pt", folder)


def check_gpus(devices: list[str]) -> None:
    import torch

    wanted = max(int(d.partition(":")[2]) for d in devices) + 1
    if not torch.cuda.is_available() or torch.cuda.device_count() < wanted:
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise UsageError(
            f"device={','.join(devices)} needs {wanted} CUDA GPUs, {found} found; on CPUs run several processes "
            "with 'torchrun --nproc_per_node N -m yolonas_cli train ...'"
        )


def argument_tokens(args: TrainArgs) -> list[str]:
    """`args` as `key=value` tokens the command line reads back into the same values."""
    tokens = []
    for field in dataclasses.fields(args):
        value = getattr(args, field.name)
        text = repr(value) if isinstance(value, list) else format_value(value)
        tokens.append(f"{field.name}={text}")
    return tokens
