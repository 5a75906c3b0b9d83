"""The training data pipelines of the original's recipes (training-facts.md §9.3, §9.4) as data, and
Ultralytics' augmentation arguments mapped onto them.

Two recipes (`DATA_RECIPES`): `roboflow` (the fine-tuning recipe, the default) and `coco` (the COCO
training recipe). A recipe fixes the structure of its pipeline (which steps, their order, border values,
the box filter, the loader's sampling rule); the user's Ultralytics-named arguments (`Augmentation`) set the
strengths. With every argument at the recipe's default the pipeline is exactly the recipe's:

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
area 0.1.

How each argument maps (Ultralytics name -> the original's parameter):

| argument | meaning here | roboflow | coco |
|---|---|---|---|
| mosaic | Mosaic probability (0: no Mosaic step) | 1.0 | 0.0 |
| mixup | Mixup probability (0: no Mixup step) | 0.0 | 0.5 |
| degrees | RandomAffine rotation, U(-degrees, degrees) | 0 | 0 |
| translate | RandomAffine translation, U(0.5 - t, 0.5 + t) x output size (same as Ultralytics) | 0.1 | 0.25 |
| scale | RandomAffine scale range (1 - scale, 1 + scale) (same as Ultralytics) | 0.5 | 0.5 |
| shear | RandomAffine shear in degrees, U(-shear, shear) on both axes | 0 | 0 |
| fliplr | HorizontalFlip probability | 0.5 | 0.5 |
| flipud | VerticalFlip probability (not in the original; inserted after HorizontalFlip) | 0.0 | 0.0 |
| hsv_h | hue gain as a fraction of the hue circle: hgain = hsv_h x 180 (OpenCV hue units) | 5/180 | 18/180 |
| hsv_s | saturation gain as a fraction of 255: sgain = hsv_s x 255 | 30/255 | 30/255 |
| hsv_v | value gain as a fraction of 255: vgain = hsv_v x 255 | 30/255 | 30/255 |
| close_mosaic | the last N epochs run without Mosaic and Mixup (Ultralytics' meaning) | 0 | 0 |

The HSV mapping: the original adds an integer offset drawn in +-gain (hue modulo 180, S and V clipped),
Ultralytics multiplies S and V by (1 +- gain). Ours keeps the original's additive rule and reads the
user's fraction against the channel's full range, so hsv_h matches Ultralytics' hue meaning exactly (a
fraction of the circle) while hsv_s / hsv_v are additive: Ultralytics' own defaults (0.7, 0.4) would be far
stronger here than there. The original recipes have no close_mosaic phase, hence 0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from yolonas_cli.core.errors import UsageError
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

__all__ = [
    "DATA_RECIPES",
    "Augmentation",
    "DataRecipe",
    "PipelineSchedule",
    "augmentation_from",
    "data_recipe",
    "hsv_gains",
    "train_pipeline",
    "train_pipelines",
    "val_pipeline",
]

HW = tuple[int, int]
HUE_RANGE = 180.0  # OpenCV 8-bit hue units per full circle
CHANNEL_RANGE = 255.0


@dataclass(frozen=True)
class Augmentation:
    """Ultralytics' augmentation arguments (see the module docstring for the mapping). Defaults: roboflow."""

    mosaic: float = 1.0
    mixup: float = 0.0
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    hsv_h: float = 5 / HUE_RANGE
    hsv_s: float = 30 / CHANNEL_RANGE
    hsv_v: float = 30 / CHANNEL_RANGE
    close_mosaic: int = 0

    def __post_init__(self) -> None:
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                raise UsageError(f"{name}={value} is out of range: use a value in [{low}, {high}]")
        if self.close_mosaic < 0 or int(self.close_mosaic) != self.close_mosaic:
            raise UsageError(f"close_mosaic={self.close_mosaic} must be a whole number of epochs >= 0")


_RANGES = (
    ("mosaic", 0.0, 1.0),
    ("mixup", 0.0, 1.0),
    ("fliplr", 0.0, 1.0),
    ("flipud", 0.0, 1.0),
    ("degrees", 0.0, 180.0),
    ("translate", 0.0, 1.0),
    ("scale", 0.0, 0.99),
    ("shear", 0.0, 45.0),
    ("hsv_h", 0.0, 1.0),
    ("hsv_s", 0.0, 1.0),
    ("hsv_v", 0.0, 1.0),
)


def hsv_gains(augmentation: Augmentation) -> tuple[float, float, float]:
    """(hgain, sgain, vgain) in OpenCV units from the fractions: (hsv_h x 180, hsv_s x 255, hsv_v x 255)."""
    return (augmentation.hsv_h * HUE_RANGE, augmentation.hsv_s * CHANNEL_RANGE, augmentation.hsv_v * CHANNEL_RANGE)


@dataclass(frozen=True)
class DataRecipe:
    """What a recipe fixes about its training data (everything but the user's `Augmentation`)."""

    name: str
    defaults: Augmentation  # the recipe's strengths in Ultralytics' names
    affine_keeps_size: bool  # RandomAffine target_size None (output = input size) instead of imgsz
    affine_filter_boxes: bool  # the box-candidate filter (wh 2, ar 20, area 0.1)
    affine_border: int
    rgb2bgr_prob: float  # 0: no RGB2BGR step
    hsv_prob: float
    mixup_keeps_size: bool  # Mixup input_dim None (the current image size) instead of imgsz
    mixup_scale: tuple[float, float]
    mixup_flip_prob: float
    min_samples: int  # the loader's rule: below this many images, draw this many with replacement (0: off)
    drop_last: bool  # the loader drops the last incomplete batch
    keep_empty: bool  # images without boxes are trained on as background (False: left out)


DATA_RECIPES = {
    "roboflow": DataRecipe(
        name="roboflow",
        defaults=Augmentation(),
        affine_keeps_size=False,
        affine_filter_boxes=False,
        affine_border=128,
        rgb2bgr_prob=0.0,
        hsv_prob=1.0,
        mixup_keeps_size=False,
        mixup_scale=(0.5, 1.5),
        mixup_flip_prob=0.5,
        min_samples=512,
        drop_last=False,
        keep_empty=True,
    ),
    "coco": DataRecipe(
        name="coco",
        defaults=Augmentation(mosaic=0.0, mixup=0.5, translate=0.25, hsv_h=18 / HUE_RANGE),
        affine_keeps_size=True,
        affine_filter_boxes=True,
        affine_border=114,
        rgb2bgr_prob=0.5,
        hsv_prob=0.5,
        mixup_keeps_size=True,
        mixup_scale=(0.5, 1.5),
        mixup_flip_prob=0.5,
        min_samples=0,
        drop_last=True,
        keep_empty=False,
    ),
}


def data_recipe(name: str) -> DataRecipe:
    """The recipe called `name` (UsageError naming the choices otherwise)."""
    if name not in DATA_RECIPES:
        raise UsageError(f"recipe={name} is not a recipe: choose one of {', '.join(DATA_RECIPES)}")
    return DATA_RECIPES[name]


def train_pipeline(
    recipe: DataRecipe, imgsz: HW, augmentation: Augmentation | None = None, closed: bool = False
) -> Pipeline:
    """The recipe's training pipeline at `imgsz` (h, w) with the user's strengths (None: the recipe's own).
    `closed`: the close_mosaic phase (no Mosaic, no Mixup). Steps whose probability is 0 are left out."""
    aug = augmentation or recipe.defaults
    steps: list[Transform] = []
    if aug.mosaic > 0 and not closed:
        steps.append(Mosaic(input_dim=imgsz, prob=aug.mosaic, border_value=114))
    steps.append(
        RandomAffine(
            degrees=aug.degrees,
            translate=aug.translate,
            scales=(1.0 - aug.scale, 1.0 + aug.scale),
            shear=aug.shear,
            target_size=None if recipe.affine_keeps_size else imgsz,
            filter_box_candidates=recipe.affine_filter_boxes,
            border_value=recipe.affine_border,
        )
    )
    if recipe.rgb2bgr_prob > 0:
        steps.append(RGB2BGR(prob=recipe.rgb2bgr_prob))
    if any(hsv_gains(aug)):
        steps.append(HSV(recipe.hsv_prob, *hsv_gains(aug)))
    if aug.fliplr > 0:
        steps.append(HorizontalFlip(prob=aug.fliplr))
    if aug.flipud > 0:
        steps.append(VerticalFlip(prob=aug.flipud))
    if aug.mixup > 0 and not closed:
        steps.append(
            Mixup(
                input_dim=None if recipe.mixup_keeps_size else imgsz,
                mixup_scale=recipe.mixup_scale,
                prob=aug.mixup,
                flip_prob=recipe.mixup_flip_prob,
                border_value=114,
            )
        )
    steps += [PaddedRescale(input_dim=imgsz, pad_value=114), Standardize(255.0)]
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


def train_pipelines(recipe: DataRecipe, imgsz: HW, augmentation: Augmentation | None, epochs: int) -> PipelineSchedule:
    """The schedule of a run of `epochs` epochs: the last `close_mosaic` epochs use the closed pipeline."""
    aug = augmentation or recipe.defaults
    main = train_pipeline(recipe, imgsz, aug)
    closed = train_pipeline(recipe, imgsz, aug, closed=True) if aug.close_mosaic else main
    return PipelineSchedule(main, closed, epochs - aug.close_mosaic)


def augmentation_from(recipe: DataRecipe, **overrides: Any) -> Augmentation:
    """The recipe's defaults with the user's arguments that were given (None values are ignored)."""
    names = {f.name for f in fields(Augmentation)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(f"{unknown[0]} is not an augmentation argument: use {', '.join(sorted(names))}")
    return replace(recipe.defaults, **{k: v for k, v in overrides.items() if v is not None})
