"""Long runs stream in bounded memory: predict over 2,000 images and over a 3,000-frame video, each
compared with a short run of the same kind (peak RSS measured in the child process)."""

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
    done = subprocess.run([sys.executable, "-c", CHILD, *tokens, "verbose=False"], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
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
def test_2000_images_in_bounded_memory(tiny_checkpoint, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    base = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for i in range(2000):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), np.roll(base, i, axis=0))
    common = (f"model={tiny_checkpoint}", "imgsz=64", "save=False", "save_txt", "save_json")
    short = peak_rss_kb(tmp_path, "predict", *common, f"source={folder}/00[0-4]?.jpg", "name=short")
    long = peak_rss_kb(tmp_path, "predict", *common, f"source={folder}", "name=long")
    assert len(json.loads((tmp_path / "runs/predict/long/predictions.json").read_text())) == 2000
    assert long - short < GROWTH_LIMIT_MB * 1024, (short, long)


@pytest.mark.slow
def test_3000_frame_video_in_bounded_memory(tiny_checkpoint, tmp_path):
    write_video(tmp_path / "short.avi", 100)
    write_video(tmp_path / "long.avi", 3000)
    common = (f"model={tiny_checkpoint}", "imgsz=64", "save=False", "save_json")
    short = peak_rss_kb(tmp_path, "predict", *common, "source=short.avi", "name=short")
    long = peak_rss_kb(tmp_path, "predict", *common, "source=long.avi", "name=long")
    assert len(json.loads((tmp_path / "runs/predict/long/predictions.json").read_text())) == 3000
    assert long - short < GROWTH_LIMIT_MB * 1024, (short, long)
