"""The YOLO-NAS architecture as data: the S/M/L variants as rows of one table of frozen records, and the
same record read back from any checkpoint's tensors (`arch_from_state_dict`), so custom-trained checkpoints
(other widths, depths or class counts) build through the same path. No torch import: the records are plain data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageSpec:
    """One CSP stage: output channels, bottleneck count, hidden width, and whether every bottleneck's
    output (not only the last) is concatenated before the final 1x1 conv."""

    out_channels: int
    num_blocks: int
    hidden_channels: int
    concat_intermediates: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """A whole YOLO-NAS architecture. Everything the state dict determines, nothing else."""

    stem_channels: int  # output channels of the stride-2 stem
    stages: tuple[StageSpec, StageSpec, StageSpec, StageSpec]  # backbone stages 1-4 (strides 4..32)
    spp_channels: int  # output channels of the SPP context module
    necks: tuple[StageSpec, StageSpec, StageSpec, StageSpec]  # neck1, neck2 (up), neck3, neck4 (down)
    head_channels: tuple[int, int, int]  # inner width of the P3, P4, P5 heads
    num_classes: int = 80
    reg_max: int = 16  # DFL bins per box side = reg_max + 1
    in_channels: int = 3


@dataclass(frozen=True)
class Variant:
    """A named architecture with the facts a user sees in `info`."""

    name: str
    arch: ArchSpec
    published_map: float | None = None  # COCO val2017 mAP50-95 published by Deci
    notes: str = field(default="", compare=False)


VARIANTS: dict[str, Variant] = {
    "yolo_nas_s": Variant("yolo_nas_s", ArchSpec(
        stem_channels=48,
        stages=(StageSpec(96, 2, 32), StageSpec(192, 3, 64), StageSpec(384, 5, 96), StageSpec(768, 2, 192)),
        spp_channels=768,
        necks=(StageSpec(192, 2, 64), StageSpec(96, 2, 48), StageSpec(192, 2, 64), StageSpec(384, 2, 64)),
        head_channels=(64, 128, 256),
    ), published_map=47.5),
    "yolo_nas_m": Variant("yolo_nas_m", ArchSpec(
        stem_channels=48,
        stages=(StageSpec(96, 2, 64, True), StageSpec(192, 3, 128, True), StageSpec(384, 5, 256, True),
                StageSpec(768, 2, 384, False)),
        spp_channels=768,
        necks=(StageSpec(192, 2, 192), StageSpec(96, 3, 64), StageSpec(192, 2, 192), StageSpec(384, 3, 256)),
        head_channels=(96, 192, 384),
    ), published_map=51.55),
    "yolo_nas_l": Variant("yolo_nas_l", ArchSpec(
        stem_channels=48,
        stages=(StageSpec(96, 2, 96, True), StageSpec(192, 3, 128, True), StageSpec(384, 5, 256, True),
                StageSpec(768, 2, 512, True)),
        spp_channels=768,
        necks=(StageSpec(192, 4, 128), StageSpec(96, 4, 128), StageSpec(192, 4, 128), StageSpec(384, 4, 256)),
        head_channels=(128, 256, 512),
    ), published_map=52.22),
}  # fmt: skip


def variant_name(arch: ArchSpec) -> str | None:
    """The table name of an architecture ('yolo_nas_s', ...), or None for a custom one.

    The class count does not matter: a custom-trained S is still an S.
    """
    for name, variant in VARIANTS.items():
        if _same_layout(variant.arch, arch):
            return name
    return None


def _same_layout(a: ArchSpec, b: ArchSpec) -> bool:
    return (a.stem_channels, a.stages, a.spp_channels, a.necks, a.head_channels, a.reg_max) == (
        b.stem_channels,
        b.stages,
        b.spp_channels,
        b.necks,
        b.head_channels,
        b.reg_max,
    )


class ArchitectureError(ValueError):
    """The tensors do not describe a YOLO-NAS model."""


def arch_from_state_dict(shapes: Mapping[str, object]) -> ArchSpec:
    """The ArchSpec described by a YOLO-NAS state dict (values: tensors or shape tuples).

    Widths come from weight shapes, depths from the bottleneck indices, `concat_intermediates` from the
    input width of each CSP layer's conv3, the class count from `cls_pred`.
    """
    dims: dict[str, tuple[int, ...]] = {k: tuple(getattr(v, "shape", v)) for k, v in shapes.items()}  # type: ignore[arg-type]

    def shape(key: str) -> tuple[int, ...]:
        if key not in dims:
            raise ArchitectureError(f"missing tensor '{key}'")
        return dims[key]

    def stage(prefix: str) -> StageSpec:
        pattern = re.compile(re.escape(prefix) + r"\.bottlenecks\.(\d+)\.alpha$")
        count = len({m.group(1) for key in dims if (m := pattern.match(key))})
        if count == 0:
            raise ArchitectureError(f"no bottlenecks under '{prefix}'")
        hidden = shape(f"{prefix}.conv1.conv.weight")[0]
        out_channels, concat_in = shape(f"{prefix}.conv3.conv.weight")[:2]
        if concat_in not in (hidden * 2, hidden * (2 + count)):
            raise ArchitectureError(f"'{prefix}.conv3' takes {concat_in} channels, not a CSP concat of {hidden}")
        return StageSpec(out_channels, count, hidden, concat_in == hidden * (2 + count))

    stem_out, in_channels = shape("backbone.stem.conv.branch_3x3.conv.weight")[:2]
    reg_out = shape("heads.head1.reg_pred.weight")[0]
    if reg_out % 4:
        raise ArchitectureError(f"'heads.head1.reg_pred' has {reg_out} outputs, not a multiple of 4")
    return ArchSpec(
        stem_channels=stem_out,
        stages=tuple(stage(f"backbone.stage{i}.blocks") for i in range(1, 5)),  # type: ignore[arg-type]
        spp_channels=shape("backbone.context_module.cv2.conv.weight")[0],
        necks=tuple(stage(f"neck.neck{i}.blocks") for i in range(1, 5)),  # type: ignore[arg-type]
        head_channels=tuple(shape(f"heads.head{i}.stem.seq.conv.weight")[0] for i in range(1, 4)),  # type: ignore[arg-type]
        num_classes=shape("heads.head1.cls_pred.weight")[0],
        reg_max=reg_out // 4 - 1,
        in_channels=in_channels,
    )
