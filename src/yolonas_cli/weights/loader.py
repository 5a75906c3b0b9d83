"""From a weights name or file to a ready YOLO-NAS module: resolve (local path, cache, download), read
safely, read the architecture from the tensors, check it is plausible and that every tensor fits it, then
build and load, and keep the metadata.

Nothing is allocated for the model before the file has shown that it holds it: the architecture read from a
few tensor shapes is first checked against `ARCH_LIMITS`, then built on the `meta` device (shapes only, no
memory) to compare every name and shape with the file's tensors and to count its parameters against
MAX_PARAMETERS; only then is the real model built.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolonas_cli.core.coco import COCO80_NAMES
from yolonas_cli.core.errors import WeightsError
from yolonas_cli.model.arch import ArchitectureError, ArchSpec, arch_from_state_dict, variant_name
from yolonas_cli.model.yolo_nas import YoloNAS, build_model


@dataclass(frozen=True)
class Limit:
    """The accepted range of one architecture number read from the tensors, and why."""

    low: int
    high: int
    why: str


ARCH_LIMITS: dict[str, Limit] = {
    "num_classes": Limit(1, 100_000, "the largest detection vocabularies have about 13,000 classes (V3Det)"),
    "channels": Limit(1, 8192, "YOLO-NAS L is at most 768 wide; 8192 is ten times that"),
    "blocks": Limit(1, 64, "YOLO-NAS L has at most 5 bottlenecks per stage"),
    "reg_max": Limit(1, 256, "every YOLO-NAS uses 16 distribution bins per box side"),
    "in_channels": Limit(1, 16, "images have 1 to 4 channels"),
}
"""Plausible ranges of the architecture numbers: a file outside them is refused before anything is built."""
MAX_PARAMETERS = 500_000_000
"""The largest model built: YOLO-NAS L has 67 million parameters; 500 million (2 GB in float32) is 7.5 times that."""


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
    check_plausible(arch, path)
    check_fits(arch, state, path)
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


def _arch_numbers(arch: ArchSpec) -> dict[str, list[int]]:
    """Every number of `arch`, grouped by the ARCH_LIMITS entry that bounds it."""
    stages = (*arch.stages, *arch.necks)
    channels = [arch.stem_channels, arch.spp_channels, *arch.head_channels]
    channels += [n for stage in stages for n in (stage.out_channels, stage.hidden_channels)]
    return {
        "num_classes": [arch.num_classes],
        "channels": channels,
        "blocks": [stage.num_blocks for stage in stages],
        "reg_max": [arch.reg_max],
        "in_channels": [arch.in_channels],
    }


def check_plausible(arch: ArchSpec, path: Path) -> None:
    """WeightsError when a number of the architecture read from the tensors is outside ARCH_LIMITS."""
    for name, values in _arch_numbers(arch).items():
        limit = ARCH_LIMITS[name]
        bad = [v for v in values if not limit.low <= v <= limit.high]
        if bad:
            raise WeightsError(
                f"'{path}' describes a model with {name.replace('_', ' ')} = {bad[0]}, outside "
                f"{limit.low}..{limit.high} ({limit.why}); it is not a YOLO-NAS checkpoint or is damaged"
            )


def check_fits(arch: ArchSpec, state: dict[str, torch.Tensor], path: Path) -> None:
    """Build `arch` on the meta device (no memory) and check the file's tensors against it: every name and
    shape (see `load_checked_state_dict`), and the parameter count against MAX_PARAMETERS."""
    with torch.device("meta"):
        skeleton = build_model(arch)
    count = sum(t.numel() for t in skeleton.state_dict().values())
    if count > MAX_PARAMETERS:
        raise WeightsError(
            f"'{path}' describes a model of {count:,} parameters, more than the {MAX_PARAMETERS:,} accepted "
            "(YOLO-NAS L has 67 million); it is not a YOLO-NAS checkpoint or is damaged"
        )
    check_state_dict(skeleton, state, path)


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """WeightsError naming the file and the first problem (missing, unexpected or mis-shaped tensors)."""
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


def load_checked_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load `state` into `model` after checking names and shapes; floats are converted to the model's dtype.

    Raises WeightsError naming the file and the first problem (missing, unexpected or mis-shaped tensors).
    """
    check_state_dict(model, state, path)
    expected = model.state_dict()
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
