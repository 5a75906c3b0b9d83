"""The original's training recipes as data, and how Ultralytics' argument names map onto them: the one home of
the training records (`Augmentation`, `Recipe`), of the recipe table (`RECIPES`) and of the one Ultralytics mapping
(`ULTRALYTICS_ARGS`), which the data pipeline (`pipelines.py`, `data.py`), the loop and `cfg train` all use.

Two recipes, with the values SuperGradients 3.7.1 resolves after composing its YAML files (training-facts.md §8;
each value is commented with its section):

- `roboflow` - `roboflow_yolo_nas_{s,m}.yaml`, the fine-tuning recipe and the default of `yolo-nas train`;
- `coco`     - `coco2017_yolo_nas_s.yaml`, training from scratch on COCO (its file says the released weights came
               from a different recipe).

SG ships no fine-tuning recipe for L: `recipe_for("roboflow", "yolo_nas_l")` uses M's values (the nearest size).

`ULTRALYTICS_ARGS` says, for every Ultralytics training argument, which recipe field it sets and how its value
converts, or that the original has no equivalent (then the loop may still implement it as an extension, e.g.
`patience`, or the CLI may refuse it). Fields with no Ultralytics name (`lr_warmup_steps`, `warmup_initial_lr`,
the EMA decay, ...) are listed by `recipe_only_fields()`. The augmentation arguments:

| argument | field (original's units) | conversion | roboflow | coco |
|---|---|---|---|---|
| mosaic | Mosaic probability (0: no Mosaic step) | same | 1.0 | 0.0 |
| mixup | Mixup probability (0: no Mixup step) | same | 0.0 | 0.5 |
| degrees | RandomAffine rotation, U(-degrees, degrees) | same | 0 | 0 |
| translate | RandomAffine translation, U(0.5 - t, 0.5 + t) x output size | same | 0.1 | 0.25 |
| scale | RandomAffine scale range | s -> (1 - s, 1 + s) | 0.5 | 0.5 |
| shear | RandomAffine shear in degrees on both axes | same | 0 | 0 |
| fliplr / flipud | flip probabilities (flipud is not in the original) | same | 0.5 / 0 | 0.5 / 0 |
| bgr | RGB2BGR probability | same | 0 | 0.5 |
| hsv_h | additive hue gain, OpenCV units (0..179) | x 180 | 5/180 | 18/180 |
| hsv_s, hsv_v | additive saturation / value gains (0..255) | x 255 | 30/255 | 30/255 |
| close_mosaic | the last N epochs without Mosaic and Mixup (not in the original) | whole | 0 | 0 |

The inherited `lr_warmup_steps=1000` quirk (schedule.py) is part of the `roboflow` recipe on purpose: with it a
fine-tune keeps the peak learning rate for 1000 steps after the warmup epochs before the cosine even starts, which
is what the original does. `lr_warmup_steps=0` gives the cosine right after the warmup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from yolonas_cli.core.errors import UsageError
from yolonas_cli.modes.train.ema import EMADecay
from yolonas_cli.modes.train.schedule import LRSchedule


@dataclass(frozen=True)
class Augmentation:
    """The training data's parameters in the original's own units (training-facts.md §9.1 - §9.3): which steps the
    pipeline runs, their strengths and borders, and the loader's sampling rules. Probabilities in [0, 1]; sizes
    (h, w) in pixels; HSV gains additive in OpenCV units. Defaults: the Roboflow recipe.

    Users set these through their Ultralytics names (`ULTRALYTICS_ARGS`, `augmentation_from`), which convert
    the units; `pipelines.train_pipeline` builds the pipeline from this record.
    """

    input_size: tuple[int, int] = (640, 640)  # §9.3 load resize, Mosaic input_dim, PaddedRescale
    mosaic: float = 1.0  # §9.3 DetectionMosaic prob (Roboflow 1.0; not in the COCO pipeline)
    degrees: float = 0.0  # §9.3 RandomAffine degrees
    translate: float = 0.1  # §9.3 RandomAffine translate (Roboflow 0.1, COCO 0.25)
    scale: tuple[float, float] = (0.5, 1.5)  # §9.3 RandomAffine scales
    shear: float = 0.0  # §9.3 RandomAffine shear (degrees)
    affine_to_input_size: bool = True  # §9.3 RandomAffine target_size = input_size (Roboflow) or None (COCO)
    affine_border: int = 128  # §9.3 RandomAffine border_value (Roboflow 128, COCO 114)
    filter_boxes: bool = False  # §9.3 RandomAffine filter_box_candidates (COCO True: wh 2, area 0.1, ar 20)
    bgr: float = 0.0  # §9.3 DetectionRGB2BGR prob (COCO 0.5; Roboflow feeds BGR always)
    hsv_prob: float = 1.0  # §9.3 DetectionHSV prob (Roboflow 1.0, COCO 0.5)
    hsv_h: float = 5.0  # §9.3 hgain: additive, OpenCV hue units (0..179) (Roboflow 5, COCO 18)
    hsv_s: float = 30.0  # §9.3 sgain: additive, 0..255
    hsv_v: float = 30.0  # §9.3 vgain: additive, 0..255
    fliplr: float = 0.5  # §9.3 DetectionHorizontalFlip prob
    flipud: float = 0.0  # NOT in the original (Ultralytics' flipud): a vertical flip after the horizontal one
    mixup: float = 0.0  # §9.3 DetectionMixup prob (Roboflow off, COCO 0.5)
    mixup_to_input_size: bool = True  # §9.3 DetectionMixup input_dim = input_size, or None (COCO: the image's)
    mixup_scale: tuple[float, float] = (0.5, 1.5)  # §9.2 DetectionMixup mixup_scale
    mixup_flip: float = 0.5  # §9.2 DetectionMixup flip_prob
    pad_value: int = 114  # §9.2 Mosaic / Mixup border and PaddedRescale pad value
    close_mosaic: int = 0  # NOT in the original (Ultralytics' meaning): the last N epochs without Mosaic and Mixup
    min_samples: int = 512  # §9.1 Roboflow: fewer images -> RandomSampler(replacement, 512 samples); 0 = off
    skip_empty_images: bool = False  # §9.1 ignore_empty_annotations (COCO True, Roboflow False)
    drop_last: bool = False  # §8 train loader drop_last (COCO True, Roboflow False)

    def __post_init__(self) -> None:
        for name in ("mosaic", "bgr", "hsv_prob", "fliplr", "flipud", "mixup", "mixup_flip"):
            _in_range(name, getattr(self, name), 0.0, 1.0)
        _in_range("degrees", self.degrees, 0.0, 180.0)
        _in_range("translate", self.translate, 0.0, 1.0)
        _in_range("shear", self.shear, 0.0, 45.0)
        _in_range("hsv_h", self.hsv_h, 0.0, HUE_RANGE)
        _in_range("hsv_s", self.hsv_s, 0.0, CHANNEL_RANGE)
        _in_range("hsv_v", self.hsv_v, 0.0, CHANNEL_RANGE)
        for name in ("scale", "mixup_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise UsageError(f"{name}=({low}, {high}) must be a range 0 < low <= high")
        for name in ("close_mosaic", "min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{name}={value} must be a whole number >= 0")


HUE_RANGE = 180.0  # OpenCV 8-bit hue units per full circle
CHANNEL_RANGE = 255.0


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise UsageError(f"{name}={value} is out of range: use a value in [{low:g}, {high:g}]")


def hsv_gains(augmentation: Augmentation) -> tuple[float, float, float]:
    """(hgain, sgain, vgain): the additive HSV gains in OpenCV units."""
    return augmentation.hsv_h, augmentation.hsv_s, augmentation.hsv_v


@dataclass(frozen=True)
class Recipe:
    """One training recipe: optimizer, schedule, EMA, loss, loop and data settings."""

    name: str
    source: str  # the SG recipe it reproduces
    # Loop (§4, §8)
    epochs: int = 100  # max_epochs
    batch: int = 16  # train batch size per process (Roboflow S 16, M 12; COCO 32 per GPU x 8)
    val_batch: int = 16  # val batch size (Roboflow 16, COCO 25)
    workers: int = 4  # train loader workers (Roboflow 4, COCO 8)
    seed: int = 42  # §4 seed of torch, numpy and random
    mixed_precision: bool = True  # §8 mixed_precision (CUDA only; FP32 on CPU, §3.11)
    sync_bn: bool = True  # §8, §12 SyncBatchNorm under DDP only
    # Optimizer (§5)
    optimizer: str = "AdamW"  # torch.optim.AdamW
    lr0: float = 5e-4  # §8 initial_lr (Roboflow S 5e-4, M 4e-4; COCO 2e-4)
    momentum: float = 0.9  # §5 AdamW beta1 (torch default; SG sets no betas)
    weight_decay: float = 1e-4  # §5 optimizer_params.weight_decay (Roboflow 1e-4, COCO 1e-5)
    zero_decay_on_bias_and_norm: bool = True  # §5 zero_weight_decay_on_bias_and_bn
    # Learning-rate schedule (§6)
    warmup: str | None = "epoch"  # §8 warmup_mode: LinearEpochLRWarmup (Roboflow), LinearBatchLRWarmup (COCO)
    warmup_epochs: int = 3  # §8 lr_warmup_epochs (Roboflow 3, COCO 0)
    lr_warmup_steps: int = 1000  # §6, §8 lr_warmup_steps: COCO 1000, INHERITED by Roboflow (the quirk)
    warmup_initial_lr: float | None = 1e-6  # §8 warmup_initial_lr (inherited by Roboflow)
    final_lr_ratio: float = 0.1  # §8 cosine_final_lr_ratio
    cooldown_epochs: int = 0  # §8 lr_cooldown_epochs
    decay: str | None = "cosine"  # §8 lr_mode CosineLRScheduler ("linear" is an extension for cos_lr=False)
    # EMA (§7)
    ema: bool = True  # §8 ema
    ema_decay: float = 0.9  # §7 ema_params.decay (Roboflow 0.9, COCO 0.9997)
    ema_decay_type: str = "threshold"  # §7 ema_params.decay_type
    ema_beta: float = 15.0  # §7 ema_params.beta (unused by threshold)
    # Loss (§3.1)
    static_assigner: bool = False  # §3.1 use_static_assigner False: TAL from the first step
    cls_weight: float = 1.0  # §3.1 classification_loss_weight
    iou_weight: float = 2.5  # §3.1 iou_loss_weight
    dfl_weight: float = 0.5  # §3.1 dfl_loss_weight
    # Validation (§8)
    metric: str = "mAP50"  # §8 valid metric: DetectionMetrics_050 (Roboflow), DetectionMetrics mAP50-95 (COCO)
    val_conf: float = 0.01  # §8 PPYoloEPostPredictionCallback score_threshold
    val_iou: float = 0.7  # §8 nms_threshold
    val_max_det: int = 300  # §8 max_predictions
    val_nms_top_k: int = 1000  # §8 nms_top_k
    # Data (§9)
    augment: Augmentation = field(default_factory=Augmentation)

    def lr_schedule(self) -> LRSchedule:
        """The learning-rate schedule this recipe describes (§6)."""
        return LRSchedule(
            lr0=self.lr0,
            epochs=self.epochs,
            warmup=self.warmup,
            warmup_epochs=self.warmup_epochs,
            warmup_steps=self.lr_warmup_steps,
            warmup_initial_lr=self.warmup_initial_lr,
            final_lr_ratio=self.final_lr_ratio,
            cooldown_epochs=self.cooldown_epochs,
            decay=self.decay,
        )

    def ema_rule(self) -> EMADecay | None:
        """The EMA decay rule (§7), or None when the recipe trains without EMA."""
        return EMADecay(self.ema_decay, self.ema_decay_type, self.ema_beta) if self.ema else None


# --------------------------------------------------------------------------------------------------------
# The recipes
# --------------------------------------------------------------------------------------------------------
ROBOFLOW_S = Recipe(name="roboflow", source="roboflow_yolo_nas_s.yaml")
ROBOFLOW_M = dataclasses.replace(ROBOFLOW_S, source="roboflow_yolo_nas_m.yaml", lr0=4e-4, batch=12)
COCO_S = Recipe(
    name="coco",
    source="coco2017_yolo_nas_s.yaml",
    epochs=300,
    batch=32,
    val_batch=25,
    workers=8,
    lr0=2e-4,
    weight_decay=1e-5,
    warmup="batch",
    warmup_epochs=0,
    ema_decay=0.9997,
    metric="mAP50-95",
    augment=Augmentation(
        mosaic=0.0,
        translate=0.25,
        affine_to_input_size=False,
        affine_border=114,
        filter_boxes=True,
        bgr=0.5,
        hsv_prob=0.5,
        hsv_h=18.0,
        mixup=0.5,
        mixup_to_input_size=False,
        min_samples=0,
        skip_empty_images=True,
        drop_last=True,
    ),
)

RECIPES: dict[tuple[str, str], Recipe] = {
    ("roboflow", "yolo_nas_s"): ROBOFLOW_S,
    ("roboflow", "yolo_nas_m"): ROBOFLOW_M,
    ("roboflow", "yolo_nas_l"): dataclasses.replace(ROBOFLOW_M, source="roboflow_yolo_nas_m.yaml (no L recipe in SG)"),
    ("coco", "yolo_nas_s"): COCO_S,
    ("coco", "yolo_nas_m"): dataclasses.replace(COCO_S, source="coco2017_yolo_nas_s.yaml values (S)"),
    ("coco", "yolo_nas_l"): dataclasses.replace(COCO_S, source="coco2017_yolo_nas_s.yaml values (S)"),
}
RECIPE_NAMES = ("roboflow", "coco")


def recipe_for(name: str, variant: str | None) -> Recipe:
    """The recipe `name` (roboflow, coco) for a variant (yolo_nas_s/m/l; None or a custom architecture: S's)."""
    if name not in RECIPE_NAMES:
        raise UsageError(f"recipe={name!r} is not known; use one of {', '.join(RECIPE_NAMES)}")
    return RECIPES.get((name, variant or "yolo_nas_s"), RECIPES[(name, "yolo_nas_s")])


# --------------------------------------------------------------------------------------------------------
# Ultralytics argument names
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conversion:
    """How a value travels between an Ultralytics argument and a recipe field. `to_recipe(name, value)` raises
    UsageError naming the argument for a value it cannot convert."""

    to_recipe: Callable[[str, Any], Any]
    from_recipe: Callable[[Any], Any]


def _integral(name: str, value: Any) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise UsageError(f"{name}={value!r} must be a whole number here (the original counts whole epochs)")
    return int(value)


def _square(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _scale_range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        return float(value[0]), float(value[1])
    return 1.0 - float(value), 1.0 + float(value)


def _scale_gain(pair: tuple[float, float]) -> Any:
    low, high = pair
    return 1.0 - low if abs((low + high) - 2.0) < 1e-12 else list(pair)


CONVERSIONS: dict[str, Conversion] = {
    "same": Conversion(lambda n, v: v, lambda v: v),
    "whole": Conversion(_integral, lambda v: v),
    # imgsz=640 <-> (640, 640)
    "imgsz": Conversion(_square, lambda v: v[0] if v[0] == v[1] else list(v)),
    # Ultralytics scale s draws the gain from U(1 − s, 1 + s); SG's scales pair is that range.
    "scale": Conversion(_scale_range, _scale_gain),
    # Ultralytics hsv_* are fractions of the channel range (it multiplies; SG adds): here the fraction of the
    # range that SG's additive gain moves (hue range 180, saturation and value 255). hsv_h thus keeps
    # Ultralytics' meaning exactly (a fraction of the hue circle); hsv_s / hsv_v are additive here, so
    # Ultralytics' own defaults (0.7, 0.4) would be far stronger than there.
    "hue": Conversion(lambda n, v: float(v) * HUE_RANGE, lambda v: v / HUE_RANGE),
    "sat_val": Conversion(lambda n, v: float(v) * CHANNEL_RANGE, lambda v: v / CHANNEL_RANGE),
    # cos_lr=True is the original's cosine; False the linear extension.
    "cos_lr": Conversion(lambda n, v: "cosine" if v else "linear", lambda v: v == "cosine"),
}


@dataclass(frozen=True)
class UltralyticsArg:
    """One Ultralytics training argument: the recipe field it sets (dotted into `augment`) or None, how its
    value converts, and the range it must lie in (in Ultralytics' units; None: the field's own check)."""

    name: str
    field: str | None
    conversion: str = "same"
    note: str = ""
    limits: tuple[float, float] | None = None


UNIT = (0.0, 1.0)  # probabilities and fractions
ULTRALYTICS_ARGS: tuple[UltralyticsArg, ...] = (
    UltralyticsArg("epochs", "epochs"),
    UltralyticsArg("batch", "batch", note="per process; the COCO recipe's 32 is per GPU of 8"),
    UltralyticsArg("imgsz", "augment.input_size", "imgsz"),
    UltralyticsArg("workers", "workers"),
    UltralyticsArg("seed", "seed", note="Ultralytics default 0, the recipes 42"),
    UltralyticsArg("amp", "mixed_precision", note="CUDA only"),
    UltralyticsArg("optimizer", "optimizer", note="'auto' means the recipe's AdamW"),
    UltralyticsArg("lr0", "lr0"),
    UltralyticsArg("lrf", "final_lr_ratio", note="same meaning: the schedule ends near lr0*lrf"),
    UltralyticsArg("momentum", "momentum", note="AdamW/Adam beta1 (as in Ultralytics), SGD momentum"),
    UltralyticsArg("weight_decay", "weight_decay", note="not scaled by batch/nbs as Ultralytics does"),
    UltralyticsArg("warmup_epochs", "warmup_epochs", "whole", note="epoch warmup; whole epochs only"),
    UltralyticsArg("cos_lr", "decay", "cos_lr", note="default True here (the original's cosine)"),
    UltralyticsArg("cls", "cls_weight", note="varifocal classification loss weight"),
    UltralyticsArg("box", "iou_weight", note="GIoU loss weight"),
    UltralyticsArg("dfl", "dfl_weight", note="distribution focal loss weight"),
    # The data pipeline (§9.3): one Mosaic/Mixup probability each; 0 leaves the step out.
    UltralyticsArg("mosaic", "augment.mosaic", limits=UNIT),
    UltralyticsArg(
        "mixup", "augment.mixup", note="SG blends 50/50, Ultralytics with a Beta(32, 32) ratio", limits=UNIT
    ),
    UltralyticsArg(
        "degrees", "augment.degrees", note="RandomAffine rotation U(-degrees, degrees)", limits=(0.0, 180.0)
    ),
    UltralyticsArg("translate", "augment.translate", note="same formula: U(0.5 - t, 0.5 + t) * size", limits=UNIT),
    UltralyticsArg("scale", "augment.scale", "scale", note="RandomAffine gain U(1 - s, 1 + s)", limits=(0.0, 0.99)),
    UltralyticsArg("shear", "augment.shear", note="degrees, U(-shear, shear) on both axes", limits=(0.0, 45.0)),
    UltralyticsArg("fliplr", "augment.fliplr", limits=UNIT),
    UltralyticsArg("flipud", "augment.flipud", note="not in the original (0 reproduces it)", limits=UNIT),
    UltralyticsArg("bgr", "augment.bgr", note="channel swap probability", limits=UNIT),
    UltralyticsArg("hsv_h", "augment.hsv_h", "hue", note="additive shift, fraction of the hue range", limits=UNIT),
    UltralyticsArg("hsv_s", "augment.hsv_s", "sat_val", note="additive shift, fraction of 255", limits=UNIT),
    UltralyticsArg("hsv_v", "augment.hsv_v", "sat_val", note="additive shift, fraction of 255", limits=UNIT),
    UltralyticsArg(
        "close_mosaic", "augment.close_mosaic", "whole", note="not in the original (0 reproduces it)", limits=(0, 1e9)
    ),
    # No equivalent in the original recipe: the loop or the CLI decides.
    UltralyticsArg("warmup_momentum", None, note="the original warms up no momentum"),
    UltralyticsArg("warmup_bias_lr", None, note="the original warms every group from warmup_initial_lr"),
    UltralyticsArg("nbs", None, note="no weight-decay scaling or gradient accumulation (batch_accumulate 1)"),
    UltralyticsArg("perspective", None, note="no perspective warp in the original"),
    UltralyticsArg("copy_paste", None, note="segmentation-only augmentation"),
    UltralyticsArg("cutmix", None, note="not in the original"),
    UltralyticsArg("erasing", None, note="classification-only augmentation"),
    UltralyticsArg("auto_augment", None, note="classification-only augmentation"),
    UltralyticsArg("dropout", None, note="the YOLO-NAS heads have no dropout"),
    UltralyticsArg("patience", None, note="the original has no early stop (loop extension)"),
    UltralyticsArg("save_period", None, note="the original saves at fixed epochs [100, 200, 250] (loop extension)"),
    UltralyticsArg("freeze", None, note="the original's nearest is finetune (heads only); see optim.freeze_parameters"),
    UltralyticsArg("single_cls", None, note="not in the original"),
    UltralyticsArg("rect", None, note="the original trains on square letterboxed inputs"),
    UltralyticsArg("multi_scale", None, note="not in the original"),
    UltralyticsArg("cache", None, note="the original reads from disk each time (loop extension)"),
    UltralyticsArg("fraction", None, note="not in the original (loop extension)"),
    UltralyticsArg("deterministic", None, note="the original seeds but does not force deterministic kernels"),
    UltralyticsArg("time", None, note="not in the original"),
)
_BY_NAME = {arg.name: arg for arg in ULTRALYTICS_ARGS}
AUGMENTATION_ARGS = tuple(arg.name for arg in ULTRALYTICS_ARGS if arg.field and arg.field.startswith("augment."))


def _get(recipe: Any, path: str) -> Any:
    value: Any = recipe
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _set(obj: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _set(getattr(obj, head), rest, value)})


def _converted(arg: UltralyticsArg, value: Any) -> Any:
    """`value` of `arg` in the recipe's units, after the range check in Ultralytics' units."""
    if arg.limits is not None:
        low, high = arg.limits
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise UsageError(f"{arg.name}={value!r} is out of range: use a value in [{low:g}, {high:g}]")
    return CONVERSIONS[arg.conversion].to_recipe(arg.name, value)


def apply_ultralytics_args(recipe: Recipe, args: Mapping[str, Any]) -> Recipe:
    """`recipe` with the Ultralytics-named `args` applied (converted as `ULTRALYTICS_ARGS` says).

    Arguments without a recipe equivalent are not the recipe's business and are skipped (the loop or the CLI
    handles them); a name Ultralytics does not have is a usage error. The result is checked by building its
    schedule and EMA rule.
    """
    for name, value in args.items():
        arg = _BY_NAME.get(name)
        if arg is None:
            raise UsageError(f"'{name}' is not a training argument this recipe understands")
        if arg.field is not None:
            recipe = _set(recipe, arg.field, _converted(arg, value))
    recipe.lr_schedule()
    recipe.ema_rule()
    return recipe


def augmentation_from(base: Augmentation, **overrides: Any) -> Augmentation:
    """`base` with the Ultralytics-named augmentation arguments that were given (None values are ignored)."""
    unknown = sorted(set(overrides) - set(AUGMENTATION_ARGS))
    if unknown:
        raise UsageError(f"{unknown[0]} is not an augmentation argument: use {', '.join(sorted(AUGMENTATION_ARGS))}")
    for name, value in overrides.items():
        if value is not None:
            arg = _BY_NAME[name]
            base = _set(base, arg.field.partition(".")[2], _converted(arg, value))  # type: ignore[union-attr]
    return base


def ultralytics_defaults(recipe: Recipe) -> dict[str, Any]:
    """The recipe's values under their Ultralytics names (for `cfg train` and `help train`)."""
    return {
        arg.name: CONVERSIONS[arg.conversion].from_recipe(_get(recipe, arg.field))
        for arg in ULTRALYTICS_ARGS
        if arg.field is not None
    }


def recipe_only_fields() -> tuple[str, ...]:
    """Recipe fields (dotted into `augment`) that no Ultralytics argument sets."""
    mapped = {arg.field for arg in ULTRALYTICS_ARGS if arg.field}
    fields = [f.name for f in dataclasses.fields(Recipe) if f.name != "augment"]
    fields += [f"augment.{f.name}" for f in dataclasses.fields(Augmentation)]
    return tuple(name for name in fields if name not in mapped and name not in ("name", "source"))
