"""Images per second of batch predict in this process and on Ray (`ray=local`, N actors), same images, same
model, nothing saved.

    python scripts/ray_benchmark.py MODEL [--images 200] [--size 480x640] [--imgsz 640] [--workers 2]

Writes `--images` synthetic photos (shapes on noise, JPEG) to a temporary folder. Reports, for each run, the
wall time from the call to the last result and the rate while results flow (first to last result: the Ray run
without its cluster and actor start-up), with the load average before and after.
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
    started = time.perf_counter()
    stamps = []
    with console.verbosity(False):
        for _ in model.predict(str(folder), stream=True, save=False, **kwargs):
            stamps.append(time.perf_counter())
    flowing = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return {
        "images": len(stamps),
        "wall_s": round(stamps[-1] - started, 2),
        "images_per_s_wall": round(len(stamps) / (stamps[-1] - started), 2),
        "images_per_s_flowing": round(flowing, 2),
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
        local = timed(model, folder, imgsz=args.imgsz, device="cpu")
        load.append(os.getloadavg()[0])
        remote = timed(model, folder, imgsz=args.imgsz, device="cpu", ray="local", workers=args.workers)
        load.append(os.getloadavg()[0])
    report = {"local": local, f"ray_local_{args.workers}_actors": remote, "load_average": [round(x, 2) for x in load]}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
