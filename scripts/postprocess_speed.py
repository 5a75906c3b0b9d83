"""How long postprocessing (candidates, top-k, NMS, max_det) takes for a batch, with 1,024 candidates per image
entering NMS (the pre-NMS top-k), as at val's conf=0.001.

    python scripts/postprocess_speed.py [--batch 8] [--runs 9] [--threads 1 2]

The inputs are synthetic head outputs of S at 640 (8,400 anchors, 80 classes): boxes of 4-124 px anywhere in the
image, scores `u**8` for uniform u (about 390,000 pairs above 0.001 per image, so the top-k cut applies). Prints
the median wall and CPU milliseconds per batch for each torch thread count; CPU time is the steadier figure on
a shared machine. To compare with another version of the package, run the script with that version first on
PYTHONPATH (only `yolonas_cli.engine.postprocess.postprocess` is used).
"""

from __future__ import annotations

import argparse
import time

# isort: off
import yolonas_cli  # noqa: F401 (first: it sets the libraries' thread environment before torch loads)

# isort: on
import numpy as np
import torch

from yolonas_cli.engine.postprocess import postprocess

ANCHORS, CLASSES, SIZE = 8400, 80, 640


def inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes [B, 8400, 4] xyxy, scores [B, 8400, 80])."""
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(batch, ANCHORS, 2, generator=g) * (SIZE - 124)
    boxes = torch.cat([corner, corner + torch.rand(batch, ANCHORS, 2, generator=g) * 120 + 4], -1)
    return boxes, torch.rand(batch, ANCHORS, CLASSES, generator=g) ** 8


def measure(batch: int, runs: int) -> tuple[float, float, int]:
    """(median wall ms, median CPU ms, detections of the first image) per batch."""
    boxes, scores = inputs(batch)
    out = postprocess(boxes, scores, conf=0.001, iou=0.7, max_det=300)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        postprocess(boxes, scores, conf=0.001, iou=0.7, max_det=300)
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return float(np.median(wall)), float(np.median(cpu)), len(out[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    args = parser.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        wall, cpu, kept = measure(args.batch, args.runs)
        print(f"batch {args.batch}, {threads} thread(s): {wall:.1f} ms wall, {cpu:.1f} ms CPU ({kept} kept of 1024)")


if __name__ == "__main__":
    main()
