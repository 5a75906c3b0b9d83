"""Where a training run starts: weights of any format the loader reads, or an architecture with fresh weights, then
the classes of the dataset.

- `pretrained=True` (default): `model=` is a weights file or name (Ultralytics .pt, SG .pth, a state dict, our
  own, a `last.pt`/`best.pt` of an earlier run). With another class count than the dataset's, the three class
  convolutions are drawn afresh as the original does (`head.replace_class_head`, training-facts.md §11) and
  everything else is transferred; the summary line says which tensors were kept and which re-initialised.
- `pretrained=False`: `model=` names an architecture (`yolo_nas_s`, `yolo_nas_m`, `yolo_nas_l`, with or without
  `.pt`) or a weights file whose architecture is used; the weights are torch's initialisation plus the original's
  prior-probability bias on the class convolutions (−log((1 − 0.01)/0.01), yolo-nas-facts.md §3.1), with the
  dataset's class count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from yolonas_cli.core.errors import UsageError
from yolonas_cli.model.yolo_nas import VARIANTS, ArchSpec, YoloNAS, build_model
from yolonas_cli.modes.train.head import HEAD_NAMES, replace_class_head
from yolonas_cli.weights.loader import LoadedWeights, load_weights

PRIOR_PROBABILITY = 0.01  # the original head's prior: the initial class score of every anchor


@dataclass
class StartPoint:
    """The model a run starts from, before any class change: its weights (None: fresh) and architecture."""

    arch: ArchSpec
    variant: str | None  # yolo_nas_s/m/l, or None for a custom architecture
    loaded: LoadedWeights | None  # the weights file, when pretrained
    description: str  # for the console and the checkpoint: what the run starts from


def architecture_name(model: str) -> str | None:
    """'yolo_nas_s' for `yolo_nas_s`, `yolo_nas_s.pt` (any case); None for anything else."""
    stem = Path(model).name.lower()
    stem = stem[: -len(".pt")] if stem.endswith(".pt") else stem
    return stem if stem in VARIANTS else None


def load_start(model: str, pretrained: bool, weights_dir: str | None = None) -> StartPoint:
    """Read the start point `model` names (see the module docstring). Raises UsageError or WeightsError."""
    name = architecture_name(model)
    if not pretrained and name is not None and not Path(model).is_file():
        return StartPoint(VARIANTS[name].arch, name, None, f"{name} with random weights")
    loaded = load_weights(model, weights_dir)
    if not pretrained:
        return StartPoint(loaded.arch, loaded.variant, None, f"the architecture of {loaded.path} with random weights")
    return StartPoint(loaded.arch, loaded.variant, loaded, str(loaded.path))


def model_for_dataset(start: StartPoint, num_classes: int) -> tuple[YoloNAS, str]:
    """The model to train on a dataset of `num_classes` classes, and one line saying what was transferred.

    Draws from torch's global generator (new class convolutions, fresh weights): seed it first."""
    if start.loaded is None:
        model = build_model(dataclasses.replace(start.arch, num_classes=num_classes))
        initialise_prior(model)
        return model, f"{start.description}, {num_classes} classes"
    model = start.loaded.model
    replacement = replace_class_head(model, num_classes)
    return model, f"{start.description}: {replacement.summary()}"


@torch.no_grad()
def initialise_prior(model: YoloNAS) -> None:
    """Set every class convolution's bias to the original's prior, −log((1 − p)/p) with p = 0.01 (−4.59512)."""
    bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    for name in HEAD_NAMES:
        getattr(model.heads, name).cls_pred.bias.fill_(bias)


def require_classes(start: StartPoint, data: str | None) -> str:
    """`data` (the dataset that fixes the classes to train), or a UsageError saying it is needed."""
    if data is None:
        classes = start.arch.num_classes
        raise UsageError(
            f"train needs data=<dataset YAML> with train and val splits (the classes to train; the model has "
            f"{classes}), e.g. data=coco8.yaml"
        )
    return data
