"""From a weights name or file to a ready YOLO-NAS module: resolve (local path, cache, download), read
safely, read the architecture from the tensors, check every shape, load, and keep the metadata."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolonas_cli.core.coco import COCO80_NAMES
from yolonas_cli.core.errors import WeightsError
from yolonas_cli.model.arch import ArchitectureError, ArchSpec, arch_from_state_dict, variant_name
from yolonas_cli.model.yolo_nas import YoloNAS, build_model


@dataclass
class LoadedWeights:
    """A loaded model with what we know about it."""

    model: YoloNAS
    arch: ArchSpec
    variant: str | None  # 'yolo_nas_s' / 'yolo_nas_m' / 'yolo_nas_l', or None for a custom architecture
    names: dict[int, str]
    path: Path
    file_format: str  # see yolonas_cli.weights.checkpoint.Checkpoint.format
    processing: dict | None = None
    meta: dict = field(default_factory=dict)


def load_weights(model: str | Path, weights_dir: str | Path | None = None) -> LoadedWeights:
    """Resolve `model` (a path, or a name from weights.lock such as 'yolo_nas_s.pt') and load it, unfused."""
    from yolonas_cli.weights.checkpoint import read_checkpoint
    from yolonas_cli.weights.resolve import resolve_weights

    path = Path(model) if Path(model).is_file() else resolve_weights(str(model), weights_dir)
    checkpoint = read_checkpoint(path)
    state = checkpoint.state_dict
    try:
        arch = arch_from_state_dict(state)
    except ArchitectureError as exc:
        raise WeightsError(f"'{path}' is not a YOLO-NAS checkpoint: {exc}") from None
    network = build_model(arch)
    load_checked_state_dict(network, state, path)
    return LoadedWeights(
        model=network,
        arch=arch,
        variant=variant_name(arch),
        names=class_names(checkpoint.class_names, arch.num_classes, path),
        path=path,
        file_format=checkpoint.format,
        processing=checkpoint.processing,
        meta={**checkpoint.meta, **({"model_name": checkpoint.model_name} if checkpoint.model_name else {})},
    )


def load_checked_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load `state` into `model` after checking names and shapes; floats are converted to the model's dtype.

    Raises WeightsError naming the file and the first problem (missing, unexpected or mis-shaped tensors).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (first: '{missing[0]}')")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (first: '{unexpected[0]}')")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensors with the wrong shape (first: '{k}' is {list(state[k].shape)},"
            f" expected {list(expected[k].shape)})"
        )
    if problems:
        raise WeightsError(f"'{path}' does not fit a YOLO-NAS model: {'; '.join(problems)}")
    converted = collections.OrderedDict(
        (k, v.to(expected[k].dtype) if v.is_floating_point() else v) for k, v in state.items()
    )
    model.load_state_dict(converted, strict=True)


def class_names(names: tuple[str, ...] | list[str] | None, num_classes: int, path: Path) -> dict[int, str]:
    """{index: name}: the checkpoint's names, else COCO's for 80 classes, else 'class0', 'class1', ..."""
    if names is None:
        names = COCO80_NAMES if num_classes == len(COCO80_NAMES) else [f"class{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise WeightsError(f"'{path}' lists {len(names)} class names but its head predicts {num_classes} classes")
    return {i: str(name) for i, name in enumerate(names)}
