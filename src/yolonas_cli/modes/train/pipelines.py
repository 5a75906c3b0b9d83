"""The training data pipelines of the original's recipes (training-facts.md §9.3, §9.4), built from the recipe's
`Augmentation` record (`recipe.py`, which also maps Ultralytics' argument names onto it).

The record fixes which steps run, their order, strengths, border values and the box filter; with a recipe's own
record the pipeline is exactly the recipe's:

| step | roboflow (default) | coco |
|---|---|---|
| 1 | Mosaic(imgsz, p 1.0, border 114) | - |
| 2 | RandomAffine, target imgsz, border 128 | RandomAffine, keeps the size, box filter, border 114 |
| 3 | - | RGB2BGR(p 0.5) |
| 4 | HSV(p 1.0; 5, 30, 30) | HSV(p 0.5; 18, 30, 30) |
| 5 | HorizontalFlip(0.5) | HorizontalFlip(0.5) |
| 6 | - | Mixup(input_dim None, scale 0.5-1.5, p 0.5, flip 0.5) |
| 7 | PaddedRescale(imgsz, 114), Standardize(255), TargetsFormat(min edge 1) | same |

RandomAffine: degrees 0, translate 0.1 (coco 0.25), scales 0.5-1.5, shear 0; the box filter is wh 2, ar 20,
area 0.1. Steps whose probability (or every gain) is 0 are left out; a vertical flip (Ultralytics' `flipud`, not
in the original) comes after the horizontal one; `close_mosaic` epochs at the end run without Mosaic and Mixup.
"""

from __future__ import annotations

from dataclasses import dataclass

from yolonas_cli.modes.train.augment import (
    HSV,
    RGB2BGR,
    HorizontalFlip,
    Mixup,
    Mosaic,
    PaddedRescale,
    Pipeline,
    RandomAffine,
    Standardize,
    TargetsFormat,
    Transform,
    VerticalFlip,
)
from yolonas_cli.modes.train.recipe import Augmentation, hsv_gains

__all__ = ["PipelineSchedule", "train_pipeline", "train_pipelines", "val_pipeline"]

HW = tuple[int, int]


def train_pipeline(aug: Augmentation, imgsz: HW, closed: bool = False) -> Pipeline:
    """The training pipeline `aug` describes, at `imgsz` (h, w). `closed`: the close_mosaic phase (no Mosaic,
    no Mixup)."""
    steps: list[Transform] = []
    if aug.mosaic > 0 and not closed:
        steps.append(Mosaic(input_dim=imgsz, prob=aug.mosaic, border_value=aug.pad_value))
    steps.append(
        RandomAffine(
            degrees=aug.degrees,
            translate=aug.translate,
            scales=aug.scale,
            shear=aug.shear,
            target_size=imgsz if aug.affine_to_input_size else None,
            filter_box_candidates=aug.filter_boxes,
            border_value=aug.affine_border,
        )
    )
    if aug.bgr > 0:
        steps.append(RGB2BGR(prob=aug.bgr))
    if any(hsv_gains(aug)):
        steps.append(HSV(aug.hsv_prob, *hsv_gains(aug)))
    if aug.fliplr > 0:
        steps.append(HorizontalFlip(prob=aug.fliplr))
    if aug.flipud > 0:
        steps.append(VerticalFlip(prob=aug.flipud))
    if aug.mixup > 0 and not closed:
        steps.append(
            Mixup(
                input_dim=imgsz if aug.mixup_to_input_size else None,
                mixup_scale=aug.mixup_scale,
                prob=aug.mixup,
                flip_prob=aug.mixup_flip,
                border_value=aug.pad_value,
            )
        )
    steps += [PaddedRescale(input_dim=imgsz, pad_value=aug.pad_value), Standardize(255.0)]
    return Pipeline(tuple(steps), TargetsFormat(min_bbox_edge_size=1.0))


def val_pipeline(imgsz: HW) -> Pipeline:
    """The Roboflow recipe's validation pipeline (§9.4) after the load resize: PaddedRescale (bottom-right,
    114), Standardize 255, TargetsFormat; BGR."""
    return Pipeline((PaddedRescale(input_dim=imgsz, pad_value=114), Standardize(255.0)), TargetsFormat(1.0))


@dataclass(frozen=True)
class PipelineSchedule:
    """The pipeline of each epoch (0-based): `main` before `close_from_epoch`, `closed` from it on."""

    main: Pipeline
    closed: Pipeline
    close_from_epoch: int

    def at(self, epoch: int) -> Pipeline:
        return self.closed if epoch >= self.close_from_epoch else self.main


def train_pipelines(aug: Augmentation, imgsz: HW, epochs: int) -> PipelineSchedule:
    """The schedule of a run of `epochs` epochs: the last `aug.close_mosaic` epochs use the closed pipeline."""
    main = train_pipeline(aug, imgsz)
    closed = train_pipeline(aug, imgsz, closed=True) if aug.close_mosaic else main
    return PipelineSchedule(main, closed, epochs - aug.close_mosaic)
