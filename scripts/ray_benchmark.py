"""Images per second of batch predict in this process and on Ray (`ray=local`, N actors), same images, same
model, nothing saved.

    python scripts/ray_benchmark.py MODEL [--images 200] [--size 480x640] [--imgsz 640] [--workers 2]

Writes `--images` synthetic photos (shapes on noise, JPEG) to a temporary folder. Runs them here with torch's
default threads, here on 1 thread (what each 1-CPU actor gets), and on Ray. Reports, for each run, the wall
time to the first and to the last result and the rate after the first result (the Ray run without its cluster
and actor start-up), with the load average before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from yolonas_cli import NAS
from yolonas_cli.core import console


def write_images(folder: Path, count: int, height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        for _ in range(3):
            x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
            cv2.rectangle(image, (x, y), (x + 80, y + 60), tuple(int(c) for c in rng.integers(100, 255, 3)), -1)
        cv2.imwrite(str(folder / f"img{i:05d}.jpg"), image)


def timed(model: NAS, folder: Path, **kwargs) -> dict[str, float]:
    """Wall time to the first and the last result, and the rate after the first result (the images that
    arrived with it, a Ray block, not counted)."""
    started = time.perf_counter()
    stamps = []
    with console.verbosity(False):
        for _ in model.predict(str(folder), stream=True, save=False, **kwargs):
            stamps.append(time.perf_counter())
    first, last = stamps[0], stamps[-1]
    later = [t for t in stamps if t > first + 0.01]
    return {
        "images": len(stamps),
        "first_result_s": round(first - started, 2),
        "wall_s": round(last - started, 2),
        "images_per_s_wall": round(len(stamps) / (last - started), 2),
        "images_per_s_after_first": round(len(later) / (last - first), 2) if later else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="480x640", help="HxW of the synthetic photos")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    model = NAS(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_images(folder, args.images, height, width)
        load = [os.getloadavg()[0]]
        report = {f"local_{torch.get_num_threads()}_threads": timed(model, folder, imgsz=args.imgsz, device="cpu")}
        load.append(os.getloadavg()[0])
        previous = torch.get_num_threads()
        torch.set_num_threads(1)  # what each 1-CPU actor runs with
        report["local_1_thread"] = timed(model, folder, imgsz=args.imgsz, device="cpu")
        torch.set_num_threads(previous)
        load.append(os.getloadavg()[0])
        report[f"ray_local_{args.workers}_actors"] = timed(
            model, folder, imgsz=args.imgsz, device="cpu", ray="local", workers=args.workers
        )
        load.append(os.getloadavg()[0])
    report["load_average"] = [round(x, 2) for x in load]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
