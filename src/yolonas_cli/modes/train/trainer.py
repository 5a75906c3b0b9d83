"""The training run: `train(args)` prepares it (`prepare.py`) and runs its epochs (`Loop`).

Per epoch, as the original (training-facts.md §4): the epoch warmup, `model.train()`, the steps
(`step.optimisation_step`), then validation of the EMA model through the project's one validation loop
(`metrics.evaluate.evaluate`) and the checkpoints (`checkpoints.py`).

What is not the original's, on purpose:
- The network sees RGB. The original's Roboflow pipeline feeds the BGR images OpenCV decodes to weights that were
  trained and are run on RGB (its COCO recipe mixes both); here the batch's channels are reversed before the
  forward pass, so fine-tuning keeps the pretrained colour features and the trained weights fit the RGB pipeline
  of predict, val and export unchanged. The data pipeline itself is the original's (BGR inside).
- Validation runs the pipeline every mode runs (`engine.PREDICT`: longest side to imgsz·636/640, centre padding)
  with the recipe's post-processing (conf 0.01, IoU 0.7, top-k 1000, 300 per image) and scores with pycocotools;
  fitness is the recipe's metric (roboflow: mAP50, coco: mAP50-95). best.pt is thus chosen by what users get.
- Extensions: patience (early stop), save_period, resume in the middle of an epoch, Ctrl-C/SIGTERM handling.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from yolonas_cli.cfg import TrainArgs
from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import PREDICT, Engine, EngineSettings
from yolonas_cli.formats.pytorch import TorchBackend
from yolonas_cli.metrics.evaluate import evaluate
from yolonas_cli.metrics.val_metrics import ValMetrics
from yolonas_cli.model.blocks import reparameterize_model
from yolonas_cli.model.yolo_nas import YoloNAS
from yolonas_cli.modes.train import checkpoints, distributed, outputs
from yolonas_cli.modes.train.distributed import Distributed
from yolonas_cli.modes.train.outputs import EpochRecord
from yolonas_cli.modes.train.prepare import RUNS, Run, deterministic_algorithms, prepare
from yolonas_cli.modes.train.recipe import Recipe
from yolonas_cli.modes.train.signals import StopRequest
from yolonas_cli.modes.train.step import optimisation_step
from yolonas_cli.modes.val import print_metrics, table_lines

HEADER = ("%11s" * 3 + "%11s" * 4) % ("Epoch", "cls_loss", "iou_loss", "dfl_loss", "Instances", "Size", "it/s")
ROW = "%11s" + "%11.4g" * 3 + "%11i" * 2 + "%11.2f"
__all__ = ["RUNS", "TrainResult", "TrainingInterrupted", "train"]


class TrainingInterrupted(YoloNasError):
    """The run was stopped (Ctrl-C, SIGTERM) after saving last.pt; the message says how to resume."""

    exit_code = 130


@dataclass(frozen=True)
class TrainResult:
    """What a run leaves: the final validation metrics (of best.pt; None without a val split or in the launcher of
    a multi-GPU run), the weights files and the run folder."""

    metrics: ValMetrics | None
    best: Path
    last: Path
    run_dir: Path


# --------------------------------------------------------------------------------------------------------
# The entry points
# --------------------------------------------------------------------------------------------------------
def train(args: TrainArgs) -> TrainResult:
    """Run training as `args` says (in this process; under torchrun, this process's share). Raises UsageError for
    bad input, TrainingInterrupted (exit code 130) when stopped by Ctrl-C or SIGTERM."""
    place = Distributed.from_environment()
    with console.verbosity(args.verbose and place.is_main), deterministic_algorithms(args.deterministic):
        run: Run | None = None
        try:
            run = prepare(args, place)
            return Loop(run).run()
        finally:
            # DDP's reducer holds the process group: free it (and any cycle holding it) while the group lives.
            # Freed after destroy_process_group, the gloo group's destructor joins a worker thread that waits
            # for the GIL the destructor holds: a hang after the last epoch (seen once in CI, py-spy --native).
            run = None
            gc.collect()
            distributed.stop()


# --------------------------------------------------------------------------------------------------------
# The epochs
# --------------------------------------------------------------------------------------------------------
class Loop:
    """The epochs of a prepared run (module docstring)."""

    def __init__(self, run: Run):
        self.prepared = run
        self.stop = StopRequest()

    def run(self) -> TrainResult:
        run, progress = self.prepared, self.prepared.progress
        console.info(f"Logging results to {run.run_dir}")
        with self.stop.installed():
            for epoch in range(progress.epoch, run.recipe.epochs):
                if not self.train_epoch(epoch):
                    self.interrupted()
                finished = self.finish_epoch(epoch)
                if self.stop_requested():
                    self.interrupted()
                if finished:
                    break
        return self.finish()

    # --- one epoch ---------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> bool:
        """The steps of `epoch` (from where a resumed run stood); False when a stop was requested."""
        run, progress, parts = self.prepared, self.prepared.progress, self.prepared.parts
        first = progress.batch if epoch == progress.epoch else 0
        if epoch != progress.epoch or first == 0:
            progress.epoch, progress.batch = epoch, 0
            progress.epoch_sums, progress.epoch_steps, progress.epoch_seconds = [0.0] * 4, 0, 0.0
        run.sampler.set_epoch(epoch, skip=first * run.recipe.batch)
        if first == 0:  # in the middle of an epoch the restored optimizer holds the rate of the next step already
            parts.scheduler.epoch_start(epoch)
        parts.model.train()
        console.info(HEADER)
        started = time.perf_counter() - progress.epoch_seconds
        instances = 0
        with console.step_progress(parts.steps_per_epoch, first) as advance:
            for batch, (images, targets) in enumerate(self.batches(), start=first):
                images, targets = to_network(images, targets, run.device)
                components = optimisation_step(parts, epoch, batch, images, targets)
                self.count(components, batch, time.perf_counter() - started)
                instances = len(targets)
                advance(self.status_line(epoch, instances, images.shape[-1], started))
                if self.stop_requested():
                    return False
        if not console.interactive():  # on a terminal the bar stays, with the same numbers
            console.info(self.status_line(epoch, instances, run.dataset.input_hw[1], started, final=True))
        return True

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loader's batches; a YoloNasError raised in a worker process comes out as the one-line original."""
        try:
            yield from self.prepared.loader
        except YoloNasError as exc:
            raise type(exc)(worker_message(exc)) from None

    def count(self, components: torch.Tensor, batch: int, seconds: float) -> None:
        progress = self.prepared.progress
        values = components.detach().float().cpu().tolist()
        world = self.prepared.place.world_size  # every process's loss is the sum over processes: shown per batch of all
        progress.epoch_sums = [s + v / world for s, v in zip(progress.epoch_sums, values)]
        progress.epoch_steps += 1
        progress.batch = batch + 1
        progress.epoch_seconds = seconds

    def status_line(self, epoch: int, instances: int, size: int, started: float, final: bool = False) -> str:
        progress = self.prepared.progress
        steps = max(progress.epoch_steps, 1)
        means = [s / steps for s in progress.epoch_sums]
        rate = progress.epoch_steps / max(time.perf_counter() - started, 1e-9)
        row = ROW % (f"{epoch + 1}/{self.prepared.recipe.epochs}", *means[:3], instances, size, rate)
        return row if not final else row + f"   {progress.epoch_steps} steps in {progress.epoch_seconds:.1f}s"

    def stop_requested(self) -> bool:
        return distributed.any_process(self.stop.requested, self.prepared.device)

    # --- end of an epoch ---------------------------------------------------------------------------
    def finish_epoch(self, epoch: int) -> bool:
        """Validate, record, save (rank 0); True when the run should end here (last epoch or patience)."""
        run, progress = self.prepared, self.prepared.progress
        last_epoch = epoch + 1 == run.recipe.epochs
        metrics = self.validate() if (run.args.val or last_epoch) and run.place.is_main else None
        record = self.record(epoch, metrics)
        improved = record.fitness is not None and (
            progress.best_fitness is None or record.fitness > progress.best_fitness
        )
        if improved:
            progress.best_fitness, progress.stale_epochs = record.fitness, 0
        elif record.fitness is not None:
            progress.stale_epochs += 1
        progress.history.append(record.to_plain())
        progress.epoch, progress.batch = epoch + 1, 0
        if run.place.is_main:
            self.save_epoch(epoch, record, improved or metrics is None)
        distributed.barrier()
        patience = run.args.patience
        stale = distributed.any_process(patience > 0 and progress.stale_epochs >= patience, run.device)  # rank 0's
        if stale and not last_epoch:
            console.info(f"Stopping early: no better {run.recipe.metric} in the last {patience} epochs")
        return last_epoch or stale

    def validate(self, weights: dict[str, torch.Tensor] | None = None) -> ValMetrics | None:
        """The metrics of the EMA model (or `weights`) on the val split, through the one validation loop."""
        run = self.prepared
        if run.val_data is None:
            return None
        model = copy.deepcopy(self.averaged_model()).eval()
        if weights is not None:
            model.load_state_dict(weights)
        reparameterize_model(model)
        settings = val_settings(run.recipe, imgsz_pair(run.args.imgsz))
        engine = Engine(TorchBackend(model, run.device), run.names, settings, PREDICT)
        evaluation = evaluate(engine, run.val_data, workers=min(run.recipe.workers, 2), title="  validating")
        return evaluation.metrics

    def averaged_model(self) -> YoloNAS:
        ema = self.prepared.parts.ema
        return ema.model if ema is not None else self.prepared.parts.model  # type: ignore[return-value]

    def record(self, epoch: int, metrics: ValMetrics | None) -> EpochRecord:
        run, progress = self.prepared, self.prepared.progress
        steps = max(progress.epoch_steps, 1)
        means = [s / steps for s in progress.epoch_sums]
        box = metrics.box if metrics is not None else None
        fitness = None if box is None else (box.map50 if run.recipe.metric == "mAP50" else box.map)
        if box is not None:
            for line in table_lines(metrics, per_class=False)[1:]:  # type: ignore[arg-type]
                console.info(line)
        return EpochRecord(
            epoch=epoch + 1,
            loss_cls=means[0],
            loss_iou=means[1],
            loss_dfl=means[2],
            loss=means[3],
            precision=None if box is None else box.mp,
            recall=None if box is None else box.mr,
            map50=None if box is None else box.map50,
            map=None if box is None else box.map,
            fitness=fitness,
            lr=run.parts.scheduler.lr,
            seconds=progress.epoch_seconds,
        )

    def save_epoch(self, epoch: int, record: EpochRecord, best: bool) -> None:
        """last.pt (resumable), best.pt when better, epoch<N>.pt on the save period, results.csv/png."""
        run = self.prepared
        weights = self.averaged_model().state_dict()
        meta = self.meta(epoch + 1, record.fitness)
        self.save_last(weights, meta)
        if best:
            checkpoints.save_weights(run.weights_dir / "best.pt", weights, run.names, run.model_name, meta)
        period = run.args.save_period
        if period > 0 and (epoch + 1) % period == 0:
            checkpoints.save_weights(run.weights_dir / f"epoch{epoch + 1}.pt", weights, run.names, run.model_name, meta)
        records = [EpochRecord.from_plain(r) for r in run.progress.history]
        outputs.write_results_csv(run.run_dir / "results.csv", records)
        if run.args.plots:
            outputs.plot_results(run.run_dir / "results.png", records)

    def meta(self, epochs_done: int, fitness: float | None) -> dict[str, Any]:
        run = self.prepared
        return checkpoints.train_meta(epochs_done, run.recipe.epochs, fitness, asdict(run.args), run.start)

    def save_last(self, weights: dict[str, torch.Tensor], meta: dict[str, Any], training: bool = True) -> Path:
        run, parts = self.prepared, self.prepared.parts
        state = None
        if training:
            state = {
                "model": parts.model.state_dict(),
                "optimizer": parts.optimizer.state_dict(),
                "ema_updates": parts.ema.updates if parts.ema is not None else 0,
                "scaler": parts.scaler.state_dict(),
                "random": checkpoints.random_states(),
                "progress": run.progress.to_plain(),
            }
        return checkpoints.save_weights(run.weights_dir / "last.pt", weights, run.names, run.model_name, meta, state)

    # --- the end -----------------------------------------------------------------------------------
    def interrupted(self) -> None:
        """Save last.pt where the run stands (rank 0) and raise TrainingInterrupted with the resume command."""
        run, progress = self.prepared, self.prepared.progress
        last = run.weights_dir / "last.pt"
        if run.place.is_main:
            self.save_last(self.averaged_model().state_dict(), self.meta(progress.epoch, None))
        distributed.barrier()
        epochs, steps = run.recipe.epochs, run.parts.steps_per_epoch
        where = f"epoch {progress.epoch}/{epochs}"
        if progress.batch:
            where = f"step {progress.batch}/{steps} of epoch {progress.epoch + 1}/{epochs}"
        raise TrainingInterrupted(
            f"training stopped after {where}; {last} saved: resume with 'yolo-nas train resume=True model={last}'"
        )

    def finish(self) -> TrainResult:
        """Validate best.pt with the per-class table, strip the training state from last.pt, report."""
        run = self.prepared
        best, last = run.weights_dir / "best.pt", run.weights_dir / "last.pt"
        metrics = None
        if run.place.is_main:
            records = run.progress.history
            final = records[-1] if records else {}
            meta = {**self.meta(len(records), final.get("fitness")), "finished": True}
            self.save_last(self.averaged_model().state_dict(), meta, training=False)
            metrics = self.final_metrics(best)
            console.info(f"Results saved to {run.run_dir}")
        distributed.barrier()
        return TrainResult(metrics, best, last, run.run_dir)

    def final_metrics(self, best: Path) -> ValMetrics | None:
        run = self.prepared
        if run.val_data is None or not best.is_file():
            return None
        console.info(f"Validating {best}...")
        metrics = self.validate(dict(Detector(best).model.state_dict()))
        if metrics is not None:
            metrics.save_dir = run.run_dir
            print_metrics(metrics, verbose=len(run.names) > 1)
        return metrics


def to_network(images: torch.Tensor, targets: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch on the device, the images' channels reversed to RGB (module docstring)."""
    non_blocking = device.type == "cuda"
    images = images.to(device, non_blocking=non_blocking).flip(1)
    return images, targets.to(device, non_blocking=non_blocking)


def val_settings(recipe: Recipe, imgsz: tuple[int, int]) -> EngineSettings:
    """The validation engine's settings: the run's input size (h, w) and the recipe's post-processing (§8)."""
    return EngineSettings(
        imgsz=imgsz,
        conf=recipe.val_conf,
        iou=recipe.val_iou,
        max_det=recipe.val_max_det,
        pre_nms_top_k=recipe.val_nms_top_k,
        multi_label=True,
        batch=recipe.val_batch,
    )


def worker_message(error: Exception) -> str:
    """The original message of an error re-raised from a DataLoader worker: torch re-raises it with the worker's
    traceback as its text, which ends with 'module.ErrorType: message'."""
    message = str(error)
    marker = f"{type(error).__module__}.{type(error).__qualname__}: "
    if not message.startswith("Caught ") or marker not in message:
        return message
    return message.rsplit(marker, 1)[1].strip()
