"""Long runs stream in bounded memory: predict over 600 images and over a 1,500-frame video, val over large
images and over many detections, each compared with a short run of the same kind (peak RSS measured in the
child process).

Each long run is sized so that the leak it guards against would exceed the bound several times over: keeping
every decoded image costs 600 x 230 KB = 138 MB (images), 1,500 x 58 KB = 86 MB (video frames) and
120 x 3.7 MB = 440 MB (large val images) against 60, 60 and 100 MB; keeping a COCO dict per detection cost
+740 MB for 300,000 detections (measured before the compact store), so 120,000 of them ~300 MB against 100 MB.
(They were 2,000 images, 3,000 frames, 300 large images and 240,000 detections: 5 minutes of the suite on a
loaded machine, for the same assertions.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

GROWTH_LIMIT_MB = 60  # allowed peak-RSS growth between the short and the long run
CHILD = textwrap.dedent("""
    import resource, sys
    from yolonas_cli.cli.app import run_cli
    code = run_cli(sys.argv[1:])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
""")


def peak_rss_kb(cwd: Path, *tokens: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *tokens, "verbose=False"], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    rss, code = done.stdout.split()
    assert code == "0", done.stderr
    return int(rss)


def write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (160, 120))
    base = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for i in range(frames):
        writer.write(np.roll(base, i, axis=1))
    writer.release()


@pytest.mark.slow
def test_600_images_in_bounded_memory(tiny_checkpoint, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    base = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for i in range(600):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), np.roll(base, i, axis=0))
    common = (f"model={tiny_checkpoint}", "imgsz=64", "save=False", "save_txt", "save_json")
    short = peak_rss_kb(tmp_path, "predict", *common, f"source={folder}/00[0-4]?.jpg", "name=short")
    long = peak_rss_kb(tmp_path, "predict", *common, f"source={folder}", "name=long")
    assert len(json.loads((tmp_path / "runs/detect/long/predictions.json").read_text())) == 600
    assert long - short < GROWTH_LIMIT_MB * 1024, (short, long)


@pytest.mark.slow
def test_1500_frame_video_in_bounded_memory(tiny_checkpoint, tmp_path):
    write_video(tmp_path / "short.avi", 100)
    write_video(tmp_path / "long.avi", 1500)
    common = (f"model={tiny_checkpoint}", "imgsz=64", "save=False", "save_json")
    short = peak_rss_kb(tmp_path, "predict", *common, "source=short.avi", "name=short")
    long = peak_rss_kb(tmp_path, "predict", *common, "source=long.avi", "name=long")
    assert len(json.loads((tmp_path / "runs/detect/long/predictions.json").read_text())) == 1500
    assert long - short < GROWTH_LIMIT_MB * 1024, (short, long)


def write_val_dataset(root: Path, count: int, hw: tuple[int, int]) -> Path:
    """`count` images of size `hw` with one label each, and their dataset YAML."""
    images, labels = root / "images" / "val", root / "labels" / "val"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    base = cv2.resize(np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8), hw[::-1])
    for i in range(count):
        cv2.imwrite(str(images / f"{i:04d}.jpg"), np.roll(base, i, axis=1))
        (labels / f"{i:04d}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    names = "\n".join(f"  {i}: c{i}" for i in range(80))
    yaml_path = root / "data.yaml"
    yaml_path.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    return yaml_path


@pytest.mark.slow
def test_val_streams_images_instead_of_holding_them(tiny_checkpoint, tmp_path):
    """120 images of 1280x960 (3.7 MB each decoded, 440 MB together) need no more memory than 120 of 160x120
    with the same labels and detection counts: images are decoded a few at a time and dropped.

    (The detections are kept for COCOeval, compactly: see the next test.)"""
    small = write_val_dataset(tmp_path / "small", 120, (120, 160))
    large = write_val_dataset(tmp_path / "large", 120, (960, 1280))
    common = (f"model={tiny_checkpoint}", "imgsz=64", "max_det=20", "plots=False", "batch=4")
    small_kb = peak_rss_kb(tmp_path, "val", *common, f"data={small}", "name=small")
    large_kb = peak_rss_kb(tmp_path, "val", *common, f"data={large}", "name=large")
    # Measured 41 MB: the bounded prefetch (2 x batch images ahead) holds about ten 3.7 MB images at once.
    assert large_kb - small_kb < 100 * 1024, (small_kb, large_kb)


@pytest.mark.slow
def test_val_detections_cost_little_memory(tiny_checkpoint, tmp_path):
    """400 images at the val defaults (conf=0.001, max_det=300: 120,000 detections, all kept for COCOeval) need
    little more memory than 100 images (30,000): detections are held as float32 arrays and become COCO dicts
    a group of categories at a time. Measured +46 MB for 1,000 images; with one dict per detection and a
    single COCOeval (before) it was +740 MB."""
    common = (f"model={tiny_checkpoint}", "imgsz=64", "plots=False", "batch=8", "save_json")
    few = write_val_dataset(tmp_path / "few", 100, (120, 160))
    many = write_val_dataset(tmp_path / "many", 400, (120, 160))
    few_kb = peak_rss_kb(tmp_path, "val", *common, f"data={few}", "name=few")
    many_kb = peak_rss_kb(tmp_path, "val", *common, f"data={many}", "name=many")
    assert len(json.loads((tmp_path / "runs/detect/many/predictions.json").read_text())) == 400 * 300
    assert many_kb - few_kb < 100 * 1024, (few_kb, many_kb)
