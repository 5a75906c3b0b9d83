"""The weights a training run writes, in this project's own format (`weights.checkpoint.save_checkpoint`, written
atomically), so that every mode loads them and `export` exports them:

- `weights/last.pt` after every epoch (and when a run is stopped): the EMA weights (what is validated, as the
  original's `ema_net`), and a `training` entry with everything `resume=True` needs to continue exactly (the raw
  model, optimizer with its learning rates, EMA step count, gradient scaler, random states, the position in the
  run, the epoch history and the early-stop counters). The entry is removed when the run ends (a smaller file;
  a finished run has nothing to resume);
- `weights/best.pt` when the fitness improves strictly (the first validated epoch always), `weights/epoch<N>.pt`
  with `save_period`: the EMA weights only.

Every file carries `meta["train"]`: the epoch, the run's length, the fitness, the date, the version and the run's
arguments (which a resumed run reads back).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.version import __version__
from yolonas_cli.weights.checkpoint import Checkpoint, read_checkpoint, save_checkpoint

TRAIN_META = "train"


@dataclass
class Progress:
    """Where a run stands and what it has seen: the next step (epoch, batch), the finished epochs' records, the
    best fitness so far and the epochs since it, and the running sums of a half-done epoch."""

    epoch: int = 0  # the epoch of the next step (0-based)
    batch: int = 0  # the batch of the next step within that epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochRecord.to_plain() of every finished epoch
    best_fitness: float | None = None
    stale_epochs: int = 0  # validated epochs since the best one
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # loss components, this epoch
    epoch_steps: int = 0  # steps of this epoch done so far
    epoch_seconds: float = 0.0  # time spent in this epoch so far

    def to_plain(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @staticmethod
    def from_plain(values: Mapping[str, Any]) -> Progress:
        return Progress(**{name: values[name] for name in Progress.__dataclass_fields__})


# --------------------------------------------------------------------------------------------------------
# Random states
# --------------------------------------------------------------------------------------------------------
def random_states() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy's global generator and Python's `random`, as checkpoint data."""
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def restore_random_states(states: Mapping[str, Any]) -> None:
    """Undo `random_states`: every generator continues where the saved run was."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------
def train_meta(epoch: int, epochs: int, fitness: float | None, args: Mapping[str, Any], start: str) -> dict[str, Any]:
    """meta["train"] of a file written after `epoch` finished epochs (fitness: that epoch's, or None)."""
    return {
        "epoch": epoch,
        "epochs": epochs,
        "fitness": fitness,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "start": start,
        "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
    }


def save_weights(
    path: Path,
    weights: Mapping[str, torch.Tensor],
    names: Mapping[int, str],
    model_name: str | None,
    meta: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write `weights` (a state dict) with the class names and `meta` as meta["train"]; `training`: the resumable
    state of last.pt."""
    return save_checkpoint(
        path,
        weights,
        class_names=[names[i] for i in range(len(names))],
        model_name=model_name,
        meta={TRAIN_META: dict(meta)},
        training=training,
    )


# --------------------------------------------------------------------------------------------------------
# Reading back for resume=True
# --------------------------------------------------------------------------------------------------------
@dataclass
class Resumable:
    """A last.pt read back: the checkpoint (EMA weights, names) and its training state and arguments."""

    path: Path
    checkpoint: Checkpoint
    training: dict[str, Any]
    args: dict[str, Any]


def read_resumable(path: str | Path) -> Resumable:
    """Read a training checkpoint to resume. UsageError when the file holds no training state (not a last.pt of
    `yolo-nas train`, or a finished run's)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"resume: {path} does not exist; give the last.pt of the run to continue (model=...last.pt)")
    checkpoint = read_checkpoint(path)
    meta = checkpoint.meta.get(TRAIN_META) if isinstance(checkpoint.meta, dict) else None
    if checkpoint.training is None or not isinstance(meta, dict) or not isinstance(meta.get("args"), dict):
        if isinstance(meta, dict) and meta.get("finished") is True:
            raise UsageError(
                f"{path} is from a finished run ({meta.get('epoch')} epochs): nothing to resume; start a new run "
                f"from it with model={path} (without resume)"
            )
        raise UsageError(
            f"{path} is not a training checkpoint (no training state): resume takes the weights/last.pt of an "
            f"interrupted 'yolo-nas train' run; to start a new run from these weights use model={path}"
        )
    return Resumable(path, checkpoint, checkpoint.training, dict(meta["args"]))


def latest_last(project: Path) -> Path:
    """The most recently written `*/weights/last.pt` under `project` (resume=True without a model)."""
    found = sorted(project.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"resume=True found no run to continue under {project}: give model=<path to last.pt>")
    return found[-1]
