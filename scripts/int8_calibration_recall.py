"""How many INT8 calibration images it takes for the INT8 models to keep 90% of the FP32 detections.

    python scripts/int8_calibration_recall.py WEIGHTS [--counts 4 8 16 32 64] [--imgsz 640] [--formats openvino onnx]

For each count N, N calibration images are made from the bundled sample photos (the photos themselves, then
seeded random crops of 40-100% of each side, mirrored half the time, brightness and contrast jittered), the
weights are exported to INT8 with them (`yolo-nas export int8=True data=...`, each format's own quantizer), and
the INT8 model's detections on the four sample photos are compared with those of the FP32 PyTorch model at
predict's settings (conf 0.25, IoU 0.7): recall = FP32 detections reproduced (same class, IoU >= 0.5) / FP32
detections. The crops are views of the same four scenes, so this says how the quantizer's ranges settle with
more images, not how it generalises to other scenes (calibrate on a few hundred images of your own data).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml

from yolonas_cli.api import NAS
from yolonas_cli.data.datasets.photos import PHOTOS
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.metrics.matching import count_matched

MATCH_IOU = 0.5


def calibration_images(count: int, folder: Path, seed: int = 0) -> Path:
    """`count` images in `folder`/images (the photos first, then jittered crops) and a dataset YAML; returns it."""
    rng = np.random.default_rng(seed)
    photos = [cv2.imread(str(p)) for p in PHOTOS]
    (folder / "images").mkdir(parents=True)
    for index in range(count):
        image = photos[index % len(photos)]
        if index >= len(photos):
            image = _jitter(image, rng)
        cv2.imwrite(str(folder / "images" / f"calib{index:04d}.png"), image)
    spec = {"path": str(folder), "train": "images", "val": "images", "nc": 80}
    (folder / "data.yaml").write_text(yaml.safe_dump(spec))
    return folder / "data.yaml"


def _jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = image[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-25, 25)
    return np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def recall(weights: Path, exported: Path, imgsz: int) -> tuple[float, int]:
    """(recall of the FP32 PyTorch detections by the exported model on the sample photos, FP32 detections)."""
    settings = EngineSettings(imgsz=(imgsz, imgsz), conf=0.25, iou=0.7)
    photos = [cv2.imread(str(p)) for p in PHOTOS]
    fp32 = NAS(weights).make_engine(settings, "cpu", runtime="torch")
    int8 = NAS(exported).make_engine(settings, "cpu")
    ref = [fp32.run_batch([image])[0][0] for image in photos]
    got = [int8.run_batch([image])[0][0] for image in photos]
    total = sum(len(r) for r in ref)
    return count_matched(ref, got, MATCH_IOU) / max(total, 1), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--formats", nargs="+", default=["openvino", "onnx"])
    args = parser.parse_args()
    print("format     images  recall  (FP32 detections on the 4 photos)")
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.counts:
            data = calibration_images(count, Path(scratch) / f"calib{count}")
            for fmt in args.formats:
                weights = Path(shutil.copy(args.weights, Path(scratch) / f"model_{fmt}_{count}.pt"))
                exported = NAS(weights).export(format=fmt, int8=True, data=str(data), imgsz=args.imgsz, verbose=False)
                value, total = recall(weights, exported, args.imgsz)
                print(f"{fmt:10s} {count:6d}  {value:.3f}  ({total})", flush=True)


if __name__ == "__main__":
    main()
