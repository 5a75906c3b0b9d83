"""Everything a training run needs before its first step (`prepare` -> `Run`), in the original's order
(training-facts.md §4): seed -> start point and class head -> recipe -> data -> optimizer groups -> EMA (a copy of
the model after the head change, before DDP) -> LR scheduler -> gradient scaler; a resumed run then gets its saved
state back. Nothing is written before every input has been read and checked; then the run folder and args.yaml.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from yolonas_cli.cfg import TrainArgs
from yolonas_cli.core import console
from yolonas_cli.core.devices import select_device
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.data.datasets.dataset import Dataset, load_dataset
from yolonas_cli.data.sinks import RUNS_ROOT, make_run_dir
from yolonas_cli.model.yolo_nas import ArchSpec, YoloNAS, arch_from_state_dict, build_model, variant_name
from yolonas_cli.modes.header import training_header_line
from yolonas_cli.modes.train import checkpoints, distributed, outputs
from yolonas_cli.modes.train.checkpoints import Progress, Resumable
from yolonas_cli.modes.train.data import TrainDataset, TrainLoader, TrainSampler, build_train_dataset, train_loader
from yolonas_cli.modes.train.distributed import Distributed
from yolonas_cli.modes.train.ema import ModelEMA
from yolonas_cli.modes.train.loss import PPYoloELoss
from yolonas_cli.modes.train.optim import build_optimizer
from yolonas_cli.modes.train.recipe import ULTRALYTICS_ARGS, Recipe, apply_ultralytics_args, recipe_for
from yolonas_cli.modes.train.schedule import LRScheduler
from yolonas_cli.modes.train.start import StartPoint, load_start, model_for_dataset, require_classes
from yolonas_cli.modes.train.step import StepParts, TrainingForward

RUNS = RUNS_ROOT  # runs/detect: train runs are runs/detect/train, train2, ...
RESUMABLE_ARGS = ("device", "workers", "verbose", "cache")  # what a resumed run may change


@dataclass
class Run:
    """Everything a run needs, built by `prepare`."""

    args: TrainArgs
    recipe: Recipe
    place: Distributed
    device: torch.device
    names: dict[int, str]
    start: str  # what the run started from
    dataset: TrainDataset
    sampler: TrainSampler
    loader: TrainLoader
    val_data: Dataset | None
    parts: StepParts
    progress: Progress
    run_dir: Path

    @property
    def weights_dir(self) -> Path:
        return self.run_dir / "weights"

    @property
    def model_name(self) -> str | None:
        return variant_name(self.parts.model.arch)


@dataclass(frozen=True)
class Beginning:
    """What a run starts from: the model size (for the recipe) and how to build the model for the dataset's
    class count (returning it and a line saying what was transferred)."""

    variant: str | None
    build: Callable[[int], tuple[YoloNAS, str]]


@contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """torch's deterministic algorithms (and cuDNN without autotuning) for the enclosed calls, then back."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = on, not on
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1], benchmark


def seed_everything(seed: int) -> None:
    """Seed torch (every device), numpy's and Python's generators (the original seeds the three, §4)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------------
# Preparing a run
# --------------------------------------------------------------------------------------------------------
def prepare(args: TrainArgs, place: Distributed) -> Run:
    """Build everything before the first step (module docstring)."""
    resumed = resumable(args)
    if resumed is not None:
        args = resumed_args(args, resumed)
    device = select_device(distributed.process_device(place, args.device))
    distributed.start(place, device)
    seed_everything(args.seed)
    data = dataset_yaml(args, resumed)
    begin = beginning(args, resumed)
    recipe = training_recipe(args, begin.variant)
    dataset = build_train_dataset(
        data,
        imgsz=args.imgsz,
        augmentation=recipe.augment,
        epochs=recipe.epochs,
        seed=recipe.seed,
        cache=args.cache,
        fraction=args.fraction,
    )
    names = dict(dataset.names)
    model, report = begin.build(len(names))
    check_class_count(model, names, resumed)
    val_data = validation_data(data, args.val)
    sampler, loader = data_loading(dataset, recipe, place, device)
    parts = step_parts(model.to(device), recipe, args, device, len(loader))
    progress = restore(parts, resumed) if resumed is not None else Progress()
    parts.forward = wrap_for_processes(parts, recipe, place, device)
    run_dir = run_folder(args, resumed, place)
    if console.is_verbose():
        name = variant_name(model.arch) or "custom YOLO-NAS"
        console.info(training_header_line(name, model, device, imgsz_pair(args.imgsz)))
    console.info(f"Start: {report}")
    run = Run(args, recipe, place, device, names, report, dataset, sampler, loader, val_data, parts, progress, run_dir)
    announce(run)
    return run


def resumable(args: TrainArgs) -> Resumable | None:
    """The checkpoint to resume from (resume=True: model=, else the latest run's last.pt; resume=<path>), or None."""
    if args.resume is False:
        return None
    if isinstance(args.resume, str):
        return checkpoints.read_resumable(args.resume)
    given = Path(args.model)
    path = given if given.is_file() else checkpoints.latest_last(Path(args.project) if args.project else RUNS)
    return checkpoints.read_resumable(path)


def resumed_args(given: TrainArgs, resumed: Resumable) -> TrainArgs:
    """The interrupted run's arguments, with the few a resumed run may change (`RESUMABLE_ARGS`) taken from `given`
    where it does not hold their defaults."""
    saved = {k: v for k, v in resumed.args.items() if k in TrainArgs.__dataclass_fields__}
    fields = TrainArgs.__dataclass_fields__
    saved.update({k: getattr(given, k) for k in RESUMABLE_ARGS if getattr(given, k) != fields[k].default})
    saved.update(resume=False, model=str(resumed.path))
    saved["imgsz"] = tuple(saved["imgsz"]) if isinstance(saved["imgsz"], list) else saved["imgsz"]
    return TrainArgs(**saved)


def dataset_yaml(args: TrainArgs, resumed: Resumable | None) -> str:
    """The dataset of the run (a resumed run's own; UsageError when none is given)."""
    if resumed is None and args.data is None:
        return require_classes(StartPoint(architecture_of(args), None, None, args.model), None)
    return str(args.data)


def architecture_of(args: TrainArgs) -> ArchSpec:
    """The architecture `model=` names, for messages (read from the file's tensors when it is one)."""
    try:
        return load_start(args.model, False, args.weights_dir).arch
    except YoloNasError:
        return build_model("yolo_nas_s").arch


def beginning(args: TrainArgs, resumed: Resumable | None) -> Beginning:
    """The start point of a new run (`start.py`), or the model of the interrupted run."""
    if resumed is not None:
        arch = arch_from_state_dict(resumed.checkpoint.state_dict)
        return Beginning(variant_name(arch), lambda classes: resumed_model(resumed))
    start = load_start(args.model, args.pretrained, args.weights_dir)
    return Beginning(start.variant, lambda classes: model_for_dataset(start, classes))


def training_recipe(args: TrainArgs, variant: str | None) -> Recipe:
    """The recipe `args.recipe` for the model size, with the Ultralytics-named arguments that were given."""
    recipe = recipe_for(args.recipe, variant)
    given = {
        a.name: getattr(args, a.name) for a in ULTRALYTICS_ARGS if a.field and getattr(args, a.name, None) is not None
    }
    if given.get("optimizer") == "auto":  # the recipe's own (AdamW)
        del given["optimizer"]
    recipe = apply_ultralytics_args(recipe, given)
    if args.min_samples is not None:
        recipe = replace(recipe, augment=replace(recipe.augment, min_samples=args.min_samples))
    recipe = replace(recipe, lr_warmup_steps=args.lr_warmup_steps)
    recipe.lr_schedule()  # checked
    return recipe


def resumed_model(resumed: Resumable) -> tuple[YoloNAS, str]:
    """The model of an interrupted run, built from its checkpoint (weights loaded by `restore`)."""
    model = build_model(arch_from_state_dict(resumed.checkpoint.state_dict))
    epoch, batch = resumed.training["progress"]["epoch"], resumed.training["progress"]["batch"]
    return model, f"resuming {resumed.path} at epoch {epoch + 1}, batch {batch}"


def check_class_count(model: YoloNAS, names: dict[int, str], resumed: Resumable | None) -> None:
    if model.arch.num_classes != len(names):
        where = f"{resumed.path} was trained on" if resumed else "the model has"
        raise UsageError(f"the dataset has {len(names)} classes but {where} {model.arch.num_classes}")


def validation_data(data: str, validate: bool) -> Dataset | None:
    """The val split (None when the YAML has none and val=False: nothing is validated)."""
    try:
        return load_dataset(data, "val")
    except UsageError:
        if validate:
            raise
        console.warn(f"{data} has no val split: training without validation")
        return None


def data_loading(
    dataset: TrainDataset, recipe: Recipe, place: Distributed, device: torch.device
) -> tuple[TrainSampler, TrainLoader]:
    """This process's sampler and the loader of the recipe's batches (UsageError when no batch is left)."""
    sampler = TrainSampler(len(dataset), recipe.seed, recipe.augment.min_samples, place.rank, place.world_size)
    loader = train_loader(
        dataset,
        sampler,
        recipe.batch,
        recipe.workers,
        drop_last=recipe.augment.drop_last,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise UsageError(
            f"batch={recipe.batch} with drop_last leaves no batch of the {len(dataset)} training images: lower batch"
        )
    return sampler, loader


def step_parts(
    model: YoloNAS, recipe: Recipe, args: TrainArgs, device: torch.device, steps_per_epoch: int
) -> StepParts:
    """Loss, optimizer (with `freeze`), LR scheduler, EMA and scaler around `model` (on its device)."""
    optimizer = build_optimizer(
        model,
        recipe.lr0,
        recipe.weight_decay,
        optimizer=recipe.optimizer,
        momentum=recipe.momentum,
        zero_decay_on_bias_and_norm=recipe.zero_decay_on_bias_and_norm,
        freeze=args.freeze,
    )
    rule = recipe.ema_rule()
    ema = ModelEMA(model, rule, steps_per_epoch * recipe.epochs) if rule is not None else None
    autocast = recipe.mixed_precision and device.type == "cuda"
    loss = PPYoloELoss(
        model.arch.num_classes,
        use_static_assigner=recipe.static_assigner,
        cls_weight=recipe.cls_weight,
        iou_weight=recipe.iou_weight,
        dfl_weight=recipe.dfl_weight,
    )
    return StepParts(
        model=model,
        forward=TrainingForward(model),
        loss=loss,
        optimizer=optimizer,
        scheduler=LRScheduler(optimizer, recipe.lr_schedule(), steps_per_epoch),
        ema=ema,
        scaler=torch.amp.GradScaler("cuda", enabled=autocast),
        autocast=autocast,
        steps_per_epoch=steps_per_epoch,
    )


def restore(parts: StepParts, resumed: Resumable) -> Progress:
    """Load an interrupted run's state into `parts`: model, optimizer (and so the learning rate), EMA, scaler and
    random states; returns where it stood."""
    state = resumed.training
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.ema is not None:
        parts.ema.model.load_state_dict(resumed.checkpoint.state_dict)
        parts.ema.updates = int(state["ema_updates"])
    parts.scaler.load_state_dict(state["scaler"])
    checkpoints.restore_random_states(state["random"])
    return Progress.from_plain(state["progress"])


def wrap_for_processes(parts: StepParts, recipe: Recipe, place: Distributed, device: torch.device) -> torch.nn.Module:
    """The training forward, in DDP under multi-process training (BatchNorm synchronised as the recipe says)."""
    if not place.enabled:
        return parts.forward
    if recipe.sync_bn:
        distributed.synchronise_batchnorm(parts.model, device)
    unused = [f"model.{name}" for name, _ in parts.model.named_parameters() if ".rbr_reparam." in f".{name}"]
    return distributed.wrap(TrainingForward(parts.model), device, unused)


def run_folder(args: TrainArgs, resumed: Resumable | None, place: Distributed) -> Path:
    """The run folder (a resumed run keeps its own); created, with args.yaml, by rank 0 only."""
    if resumed is not None:
        folder = resumed.path.resolve().parent.parent
    else:
        chosen = make_run_dir(args.project, args.name, args.exist_ok, "train", create=True) if place.is_main else ""
        folder = Path(distributed.main_process_text(str(chosen)))
    if place.is_main:
        (folder / "weights").mkdir(parents=True, exist_ok=True)
        outputs.write_args_yaml(folder / "args.yaml", asdict(args))
    return folder


def announce(run: Run) -> None:
    """What the run is about to do, in a few lines."""
    recipe, parts = run.recipe, run.parts
    hw = imgsz_pair(run.args.imgsz)
    console.info(
        f"Data: {len(run.dataset)} train images, {len(run.val_data) if run.val_data else 0} val images, "
        f"{len(run.names)} classes; {parts.steps_per_epoch} steps of {recipe.batch} per epoch"
        + (f" on each of {run.place.world_size} processes" if run.place.enabled else "")
    )
    console.info(
        f"Recipe {recipe.name} ({recipe.source}): {recipe.optimizer} lr0 {recipe.lr0:g}, weight decay "
        f"{recipe.weight_decay:g}, {recipe.epochs} epochs at {hw[0]}x{hw[1]}, EMA {recipe.ema_decay:g}, "
        f"fitness {recipe.metric}, device {run.device}" + (", mixed precision" if parts.autocast else "")
    )
