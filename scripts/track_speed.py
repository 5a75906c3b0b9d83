"""How long the trackers take per frame with many objects (CPU, single process).

    python scripts/track_speed.py [--objects 100] [--frames 300] [--tracker bytetrack.yaml]

Simulates ``--objects`` objects moving at constant velocity (bouncing off the borders of a 1920x1080 image) with
noisy detections, one false positive and one missed detection per frame, and times ``tracker.update`` only (the
detections are made beforehand). Prints the median and 95th-percentile milliseconds per frame after a warm-up.
BoT-SORT runs without camera-motion compensation here (no images); ``gmc_method`` costs extra per frame.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from yolonas_cli.modes.track import BotSortConfig, load_tracker_config, make_tracker

WIDTH, HEIGHT = 1920, 1080
WARMUP = 20


def simulate(objects: int, frames: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame ``(boxes [N, 4] xyxy, scores [N], classes [N])``."""
    rng = np.random.default_rng(seed)
    size = rng.uniform([20, 40], [60, 120], size=(objects, 2))
    centre = rng.uniform(size, [WIDTH, HEIGHT] - size, size=(objects, 2))
    velocity = rng.uniform(-4, 4, size=(objects, 2))
    out = []
    for _ in range(frames):
        centre = centre + velocity
        bounce = (centre < size / 2) | (centre > [WIDTH, HEIGHT] - size / 2)
        velocity = np.where(bounce, -velocity, velocity)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) + rng.normal(0, 1.5, (objects, 4))
        scores = rng.uniform(0.3, 0.95, objects)
        keep = np.ones(objects, dtype=bool)
        keep[rng.integers(objects)] = False  # one missed detection
        false = np.array([[100.0, 100.0, 140.0, 180.0]]) + rng.uniform(0, 1500, (1, 1))
        boxes = np.concatenate([boxes[keep], false])
        scores = np.concatenate([scores[keep], rng.uniform(0.1, 0.5, 1)])
        out.append((boxes, scores, np.zeros(len(boxes))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--tracker", default="bytetrack.yaml", help="bytetrack.yaml, botsort.yaml or a path")
    args = parser.parse_args()
    config = load_tracker_config(args.tracker)
    if isinstance(config, BotSortConfig):
        config = replace(config, gmc_method="none")
    tracker = make_tracker(config)
    times = []
    reported = 0
    for boxes, scores, classes in simulate(args.objects, args.frames + WARMUP):
        start = time.perf_counter()
        rows = tracker.update(boxes, scores, classes)
        times.append(time.perf_counter() - start)
        reported += len(rows)
    ms = np.array(times[WARMUP:]) * 1e3
    print(
        f"{config.tracker_type}: {args.objects} objects, {args.frames} frames: median {np.median(ms):.3f} ms, "
        f"p95 {np.percentile(ms, 95):.3f} ms per frame ({reported / len(times):.1f} tracks reported per frame)"
    )


if __name__ == "__main__":
    main()
