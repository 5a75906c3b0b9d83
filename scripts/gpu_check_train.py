"""GPU check for training: mixed precision (amp) on CUDA against FP32 on the same data, weights and seed.

Run on a CUDA machine: python scripts/gpu_check_train.py   (about a minute for S at 320, 2 epochs)
Smoke run on a CPU (what CI does): python scripts/gpu_check_train.py --device cpu --variant tiny --imgsz 64

Trains the fixture formula weights (an untrained network: the loss has far to fall) on a small synthetic dataset of
drawn shapes, twice: amp=False and amp=True. Prints one line per check and exits 1 if a check fails:
  1. both runs finish and write weights/last.pt and weights/best.pt;
  2. every logged loss is finite (a GradScaler that never finds a usable scale would give inf/nan or no steps);
  3. the amp run's loss falls from the first epoch to the last (it learns);
  4. the amp run's first-epoch loss is within 10% of the FP32 run's (same data order and draws: only the arithmetic
     differs; on a CPU amp does not apply, so the two runs must be equal);
  5. the amp run's best.pt loads and predicts on a validation image.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path

import torch

from yolonas_cli import NAS
from yolonas_cli.data.datasets.shapes import ShapesSpec, write_shapes_dataset
from yolonas_cli.weights.checkpoint import save_checkpoint
from yolonas_cli.weights.synthetic import synthetic_torch_state_dict_from_files

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # data files: key lists, BatchNorm stats
FIRST_EPOCH_TOLERANCE = 0.10  # amp vs FP32, relative: FP16 activations move a loss by ~1e-3; 10% catches a broken path


def formula_weights(folder: Path, variant: str) -> Path:
    """The fixture formula weights of `variant` (tiny, s, m, l) as a weights file in our format."""
    state = synthetic_torch_state_dict_from_files(
        FIXTURES / "keys" / f"yolo_nas_{variant}.keys", FIXTURES / f"yolo_nas_{variant}_bnstats.npz"
    )
    return save_checkpoint(folder / f"formula_{variant}.pt", state, class_names=None, model_name=None)


def train(weights: Path, data: Path, folder: Path, name: str, args: argparse.Namespace, amp: bool) -> list[float]:
    """One run; returns its train/loss per epoch from results.csv."""
    NAS(str(weights)).train(
        data=str(data),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=8,
        device=args.device,
        amp=amp,
        workers=0,
        seed=0,
        deterministic=True,
        min_samples=0,
        project=str(folder),
        name=name,
        verbose=False,
    )
    with open(folder / name / "results.csv", newline="") as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variant", default="s")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("FAIL no CUDA device: run with --device cpu for the smoke run")
        return 1
    print(f"device {args.device}, torch {torch.__version__}, {args.variant} at {args.imgsz}, {args.epochs} epochs")
    checks: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = formula_weights(folder, args.variant)
        size = (max(args.imgsz, 64), max(args.imgsz, 64))
        data = write_shapes_dataset(folder / "shapes", ShapesSpec(train=32, val=8, size=size))
        fp32 = train(weights, data, folder, "fp32", args, amp=False)
        amp = train(weights, data, folder, "amp", args, amp=True)
        outputs = [folder / run / "weights" / f for run in ("fp32", "amp") for f in ("last.pt", "best.pt")]
        checks.append(("both runs wrote last.pt and best.pt", all(p.is_file() for p in outputs), ""))
        finite = all(math.isfinite(v) for v in fp32 + amp)
        checks.append(("every logged loss is finite", finite, f"fp32 {fp32}, amp {amp}"))
        checks.append(("the amp run's loss falls", amp[-1] < amp[0], f"{amp[0]:.4f} -> {amp[-1]:.4f}"))
        gap = abs(amp[0] - fp32[0]) / max(abs(fp32[0]), 1e-12)
        same = gap <= (FIRST_EPOCH_TOLERANCE if args.device.startswith("cuda") else 0.0)
        checks.append(("amp's first epoch matches FP32's", same, f"relative gap {gap:.2e}"))
        image = next((folder / "shapes" / "images" / "val").iterdir())
        result = NAS(str(folder / "amp" / "weights" / "best.pt"))(str(image), device=args.device, verbose=False)[0]
        checks.append(("the amp run's best.pt predicts", result.orig_shape == size, f"{len(result.boxes)} boxes"))
    for text, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'} {text}{': ' + detail if detail else ''}")
    passed = sum(ok for _, ok, _ in checks)
    print(f"{passed}/{len(checks)} checks passed")
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
