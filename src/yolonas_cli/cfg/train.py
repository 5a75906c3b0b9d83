"""The arguments of `train`: Ultralytics' names, the original recipe's values as defaults (None: the recipe
chooses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from yolonas_cli.cfg.builders import arg, exist_ok_arg, flag_arg, name_arg, project_arg
from yolonas_cli.cfg.modes import CommonArgs
from yolonas_cli.cfg.values import cache_choice, devices, freeze_value, optional, resume_value
from yolonas_cli.core.checks import (
    Check,
    choice,
    integer,
    number,
    text,
)


def recipe_arg(help: str, check: Check, values: str, example: Any) -> Any:
    """A training argument whose default is the recipe's (None = the recipe's value, listed in the help)."""
    return arg(None, f"{help} (None = the recipe's: {values})", optional(check), example=example)


def train_arg(default: Any, help: str, check: Check, example: Any = None) -> Any:
    """A training argument whose default is the same in every recipe."""
    return arg(default, help, check, example=example)


@dataclass
class TrainArgs(CommonArgs):
    """Arguments of `yolo-nas train`: Ultralytics' names, the original recipe's values (modes/train/recipe.py).

    Arguments whose value differs between the recipes (roboflow, coco) or the model sizes default to None, which
    means the chosen recipe's value; the others carry the value every recipe shares. `help train` lists both.
    """

    mode: ClassVar[str] = "train"

    model: str = arg(
        "yolo_nas_s.pt",
        "start point: weights (yolo_nas_s.pt, a file path, a last.pt) or, with pretrained=False, an architecture "
        "(yolo_nas_s, yolo_nas_m, yolo_nas_l)",
        text(),
        (str,),
    )
    device: str = arg(
        "auto",
        "auto, cpu, cuda, cuda:N (or just N), mps, or several GPUs for DDP: 0,1",
        devices,
        (str, int, tuple, list),
    )
    data: str | None = arg(None, "dataset YAML with train and val splits (name or path)", text(True), (str,), "my.yaml")
    recipe: str = arg(
        "roboflow",
        "the original's recipe: roboflow (fine-tuning) or coco (training on COCO)",
        choice(("roboflow", "coco")),
        (str,),
    )
    pretrained: bool = flag_arg(True, "start from the weights in model= (False: random weights of its architecture)")
    epochs: int | None = recipe_arg("epochs to train", integer(1), "roboflow 100, coco 300", 100)
    batch: int | None = recipe_arg(
        "images per batch and process", integer(1), "roboflow 16 (S), 12 (M, L); coco 32", 16
    )
    workers: int | None = recipe_arg(
        "data loading processes (0 = in the main process)", integer(0), "roboflow 4, coco 8", 4
    )
    optimizer: str = train_arg(
        "auto", "auto (the recipe's AdamW), AdamW, Adam or SGD", choice(("auto", "adamw", "adam", "sgd"))
    )
    lr0: float | None = recipe_arg(
        "initial (peak) learning rate", number(0, 1, low_open=True), "roboflow 5e-4 (S), 4e-4 (M, L); coco 2e-4", 5e-4
    )
    lrf: float = train_arg(0.1, "final learning rate as a fraction of lr0 (the cosine ends near lr0*lrf)", number(0, 1))
    momentum: float = train_arg(0.9, "AdamW/Adam beta1, SGD momentum", number(0, 1))
    weight_decay: float | None = recipe_arg(
        "weight decay (none on biases and BatchNorm)", number(0, 1), "roboflow 1e-4, coco 1e-5", 1e-4
    )
    warmup_epochs: int | None = recipe_arg("epochs of linear warmup from 1e-6", integer(0), "roboflow 3, coco 0", 3)
    lr_warmup_steps: int = train_arg(
        1000,
        "the original's lr_warmup_steps: the coco recipe's batch warmup, and the steps the cosine waits for "
        "(the roboflow recipe inherits 1000 too; 0 starts the cosine right after the warmup epochs)",
        integer(0),
    )
    cos_lr: bool = flag_arg(True, "cosine learning-rate decay (False: linear)")
    seed: int = train_arg(42, "random seed of the run (data order, augmentation, new head weights)", integer(0))
    deterministic: bool = flag_arg(True, "deterministic algorithms (a run repeats bit for bit on the same machine)")
    amp: bool = flag_arg(True, "mixed precision on CUDA (the CPU trains in FP32)")
    patience: int = train_arg(100, "stop after this many epochs without a better fitness (0 = never)", integer(0))
    save_period: int = train_arg(-1, "also save weights/epoch<N>.pt every N epochs (-1 = off)", integer(-1))
    cache: bool | str = train_arg(
        False, "keep decoded images in ram or on disk (False = read every epoch)", cache_choice, "ram"
    )
    fraction: float = train_arg(1.0, "fraction of the train images to use", number(0, 1, low_open=True))
    min_samples: int | None = recipe_arg(
        "images drawn per epoch at least (with replacement when the dataset is smaller)",
        integer(0),
        "roboflow 512, coco 0",
        0,
    )
    freeze: int | list[int | str] | None = train_arg(  # noqa: RUF009 (a dataclasses.Field, not a default)
        None,
        "freeze the first N layers, or the layers / name prefixes listed (None = train everything)",
        freeze_value,
        10,
    )
    resume: bool | str = train_arg(
        False, "continue an interrupted run: True with model=<last.pt>, or resume=<last.pt>", resume_value
    )
    val: bool = flag_arg(True, "validate every epoch (False: only after the last)")
    plots: bool = flag_arg(True, "save the loss and metric curves (results.png)")
    project: str | None = project_arg("train")
    name: str | None = name_arg("train")
    exist_ok: bool = exist_ok_arg()
    cls: float = train_arg(1.0, "classification (varifocal) loss weight", number(0, 1e3))
    box: float = train_arg(2.5, "box (GIoU) loss weight", number(0, 1e3))
    dfl: float = train_arg(0.5, "distribution focal loss weight", number(0, 1e3))
    close_mosaic: int = train_arg(0, "train the last N epochs without mosaic and mixup", integer(0))
    mosaic: float | None = recipe_arg("mosaic probability", number(0, 1), "roboflow 1.0, coco 0.0", 1.0)
    mixup: float | None = recipe_arg("mixup probability", number(0, 1), "roboflow 0.0, coco 0.5", 0.0)
    degrees: float = train_arg(0.0, "rotation range in degrees (+-)", number(0, 180))
    translate: float | None = recipe_arg(
        "translation range (+- fraction of the size)", number(0, 1), "roboflow 0.1, coco 0.25", 0.1
    )
    scale: float = train_arg(0.5, "scale gain range (+-)", number(0, 0.99))
    shear: float = train_arg(0.0, "shear range in degrees (+-)", number(0, 45))
    flipud: float = train_arg(0.0, "vertical flip probability", number(0, 1))
    fliplr: float = train_arg(0.5, "horizontal flip probability", number(0, 1))
    bgr: float | None = recipe_arg("channel swap probability", number(0, 1), "roboflow 0.0, coco 0.5", 0.0)
    hsv_h: float | None = recipe_arg(
        "hue shift (+- fraction of the hue circle)", number(0, 1), "roboflow 5/180 = 0.0278, coco 18/180 = 0.1", 0.1
    )
    hsv_s: float = train_arg(30 / 255, "saturation shift (+- fraction of 255)", number(0, 1))
    hsv_v: float = train_arg(30 / 255, "value (brightness) shift (+- fraction of 255)", number(0, 1))
