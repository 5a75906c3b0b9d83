"""Throughput of the training data pipeline (load, Mosaic, RandomAffine, HSV, flip, padded rescale, /255,
collate) in images per second, the way `yolo-nas train` feeds the model.

Self-contained: writes a synthetic dataset of JPEG photos (crops of the bundled photos at 640x480 and
480x640, five YOLO boxes each) into a temporary folder. Run:
    python scripts/train_data_speed.py [--imgsz 640] [--workers 2] [--batch 16] [--batches 12] [--recipe roboflow]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from yolonas_cli.modes.train.data import TrainSampler, build_train_dataset, train_loader

ASSETS = Path(__file__).resolve().parents[1] / "src" / "yolonas_cli" / "assets"


def write_photo_dataset(root: Path, count: int, seed: int = 0) -> Path:
    """`count` JPEG crops of the bundled photos (640x480 or 480x640) with 5 random boxes each, and data.yaml."""
    rng = np.random.default_rng(seed)
    photos = [cv2.imread(str(p)) for p in sorted(ASSETS.glob("*.*")) if p.suffix in (".png", ".jpg")]
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        y, x = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
        size = (640, 480) if i % 2 else (480, 640)
        image = cv2.resize(photo[y:, x:], size, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(root / "images" / "train" / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        centres, sizes = rng.uniform(0.2, 0.8, (5, 2)), rng.uniform(0.05, 0.3, (5, 2))
        lines = [
            f"{k % 3} {cx:.5f} {cy:.5f} {bw:.5f} {bh:.5f}" for k, ((cx, cy), (bw, bh)) in enumerate(zip(centres, sizes))
        ]
        (root / "labels" / "train" / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    spec = {"path": ".", "train": "images/train", "val": "images/train", "names": ["a", "b", "c"]}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def images_per_second(data: Path, imgsz: int, recipe: str, workers: int, batch: int, batches: int) -> float:
    dataset = build_train_dataset(data, imgsz=imgsz, recipe=recipe)
    sampler = TrainSampler(len(dataset), seed=0, min_samples=batch * (batches + 1))
    loader = iter(train_loader(dataset, sampler, batch_size=batch, workers=workers))
    next(loader)  # workers started, first batch made
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(loader)
    elapsed = time.perf_counter() - start
    assert images.shape == (batch, 3, imgsz, imgsz)
    return batch * batches / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--recipe", default="roboflow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_photo_dataset(Path(tmp), args.images)
        for workers in sorted({0, args.workers}):
            rate = images_per_second(data, args.imgsz, args.recipe, workers, args.batch, args.batches)
            print(
                f"{args.recipe} pipeline at {args.imgsz}, workers={workers}: {rate:.1f} images/s "
                f"({args.batch * args.batches} images after one warm-up batch)"
            )


if __name__ == "__main__":
    main()
