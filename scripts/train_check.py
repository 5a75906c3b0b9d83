"""Does `yolo-nas train` learn? Fine-tune on a synthetic dataset of drawn shapes and print mAP before and after.

Self-contained: writes a dataset of drawn circles, squares and triangles with exact boxes in the YOLO format
(`data.datasets.shapes`) and starts from the fixture formula weights (`weights.synthetic`, read from the fixture
data files: a deterministic, untrained network) or from real weights given with --weights. Prints mAP50-95 and
mAP50 of the start model (its new 3-class head drawn as the run draws it) and of the trained best.pt, the time
per epoch, and the peak memory of the process (its DataLoader workers included).

    python scripts/train_check.py                               # tiny at 128, the measured setting of the README
    python scripts/train_check.py --variant s --imgsz 160 --epochs 10
    python scripts/train_check.py --weights yolo_nas_s.pt       # real COCO weights, when present
    python scripts/train_check.py --set mosaic=0.5 warmup_epochs=1   # any other train argument
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from yolonas_cli import NAS
from yolonas_cli.cli.parse import smart_value
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.data.datasets.dataset import load_dataset
from yolonas_cli.data.datasets.shapes import ShapesSpec, write_shapes_dataset
from yolonas_cli.engine.engine import PREDICT, Engine
from yolonas_cli.formats.pytorch import TorchBackend
from yolonas_cli.metrics.evaluate import evaluate
from yolonas_cli.model.blocks import reparameterize_model
from yolonas_cli.modes.train.prepare import seed_everything
from yolonas_cli.modes.train.recipe import recipe_for
from yolonas_cli.modes.train.start import load_start, model_for_dataset
from yolonas_cli.modes.train.trainer import val_settings
from yolonas_cli.weights.checkpoint import save_checkpoint
from yolonas_cli.weights.synthetic import synthetic_torch_state_dict_from_files

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # data files: key lists, BatchNorm stats


def formula_weights(folder: Path, variant: str) -> Path:
    """The fixture formula weights of `variant` (tiny, s, m, l) as a weights file in our format."""
    state = synthetic_torch_state_dict_from_files(
        FIXTURES / "keys" / f"yolo_nas_{variant}.keys", FIXTURES / f"yolo_nas_{variant}_bnstats.npz"
    )
    return save_checkpoint(folder / f"formula_{variant}.pt", state, class_names=None, model_name=None)


def start_map(weights: Path, data: Path, imgsz: int, seed: int, recipe: str) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the start model with its new head, drawn with the run's seed as the run draws it."""
    seed_everything(seed)
    start = load_start(str(weights), True)
    dataset = load_dataset(data, "val")
    model, _ = model_for_dataset(start, dataset.nc)
    engine = Engine(
        TorchBackend(reparameterize_model(model.eval()), torch.device("cpu")),
        dataset.names,
        val_settings(recipe_for(recipe, start.variant), imgsz_pair(imgsz)),
        PREDICT,
    )
    metrics = evaluate(engine, dataset).metrics
    return metrics.box.map, metrics.box.map50


def peak_memory_mb() -> float:
    """Peak resident memory of this process plus the largest of its finished children (DataLoader workers), MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="tiny", help="formula weights: tiny, s, m or l")
    parser.add_argument("--weights", default=None, help="start from these weights instead (e.g. yolo_nas_s.pt)")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr0", type=float, default=5e-3)
    parser.add_argument("--train", type=int, default=400, help="training images")
    parser.add_argument("--val", type=int, default=100, help="validation images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: on 2 busy cores a second thread mostly waits)"
    )
    parser.add_argument("--folder", default=None, help="where to write the dataset and the run (default: a temp dir)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=["warmup_epochs=1", "mosaic=0.5"],
        metavar="KEY=VALUE",
        help="other train arguments (default: warmup_epochs=1 mosaic=0.5, the measured setting)",
    )
    options = parser.parse_args()
    torch.set_num_threads(options.threads)

    folder = Path(options.folder or tempfile.mkdtemp(prefix="train_check_"))
    size = (options.imgsz, options.imgsz)
    data = write_shapes_dataset(folder / "shapes", ShapesSpec(options.train, options.val, size, seed=options.seed))
    weights = Path(options.weights) if options.weights else formula_weights(folder, options.variant)
    before = start_map(weights, data, options.imgsz, options.seed, "roboflow")
    print(f"dataset: {options.train} train / {options.val} val images of {size[0]}x{size[1]}, 3 classes ({folder})")
    print(f"start:   {weights.name}, mAP50-95 {before[0]:.4f}, mAP50 {before[1]:.4f}")

    started = time.perf_counter()
    model = NAS(weights)
    metrics = model.train(
        data=str(data),
        imgsz=options.imgsz,
        epochs=options.epochs,
        batch=options.batch,
        lr0=options.lr0,
        workers=options.workers,
        seed=options.seed,
        min_samples=0,
        project=str(folder / "runs"),
        device="cpu",
        verbose=False,
        **{key: smart_value(value) for key, _, value in (item.partition("=") for item in options.set)},
    )
    total = time.perf_counter() - started
    assert metrics is not None
    run_dir = Path(metrics.save_dir or folder / "runs" / "train")
    with (run_dir / "results.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    per_epoch = sum(float(row["time"]) for row in epochs) / max(len(epochs), 1)
    extra = f", {' '.join(options.set)}" if options.set else ""
    print(
        f"trained: {len(epochs)} epochs at imgsz {options.imgsz}, batch {options.batch}, lr0 {options.lr0:g}{extra}: "
        f"mAP50-95 {metrics.box.map:.4f}, mAP50 {metrics.box.map50:.4f} (best.pt)"
    )
    print(f"time:    {per_epoch:.1f} s per epoch (training steps), {total / 60:.1f} min in all with validation")
    print(f"memory:  peak {peak_memory_mb():.0f} MB resident (process and workers)")
    print(f"run:     {run_dir}")


if __name__ == "__main__":
    try:
        main()
    except YoloNasError as error:  # e.g. stopped by Ctrl-C or SIGTERM: last.pt saved, the message says how to resume
        print(f"Error: {error}" if error.exit_code != 130 else str(error), file=sys.stderr)
        sys.exit(error.exit_code)
