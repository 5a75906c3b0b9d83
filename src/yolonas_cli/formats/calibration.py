"""INT8 calibration images from `data=` (a dataset YAML, see `yolonas_cli.data.datasets.dataset`) and `fraction=`.

Calibration uses the dataset's train split (its val split when there is no train split); the cost report
after quantization uses the val split. `data=None` means the bundled coco8.yaml (downloaded once), as
`yolo-nas val` does. The images go through the engine's own letterbox, so the calibration inputs are
exactly what the model sees at predict time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.engine.letterbox import Letterbox, to_bgr_uint8

if TYPE_CHECKING:
    from yolonas_cli.data.datasets.dataset import Dataset

DEFAULT_DATA = "coco8.yaml"


@dataclass(frozen=True)
class CalibrationSet:
    """Letterboxed calibration inputs: float32 [N,3,H,W] RGB 0-1, and where they came from."""

    inputs: np.ndarray
    data: str
    split: str

    def batches(self, batch: int) -> Iterator[np.ndarray]:
        """Batches of exactly `batch` images (the last one is completed by repeating the first images)."""
        count = len(self.inputs)
        for start in range(0, count, batch):
            chunk = self.inputs[start : start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, self.inputs[: batch - len(chunk)]])
            yield np.ascontiguousarray(chunk)


def load_split(data: str, split: str) -> Dataset | None:
    """The `Dataset` of `split`, or None when the YAML has no such split."""
    from yolonas_cli.data.datasets.dataset import load_dataset
    from yolonas_cli.data.datasets.yaml_spec import find_yaml, read_yaml

    spec = read_yaml(find_yaml(data))
    if not spec.get(split):
        return None
    return load_dataset(data, split)


def calibration_set(data: str | None, fraction: float, imgsz: tuple[int, int]) -> CalibrationSet:
    """The first ceil(fraction * N) images of the train split (or val) of `data`, letterboxed to `imgsz`."""
    data = data or DEFAULT_DATA
    split = "train"
    dataset = load_split(data, split)
    if dataset is None:
        split, dataset = "val", load_split(data, "val")
    if dataset is None:
        raise YoloNasError(f"data={data} has neither a train nor a val split to calibrate INT8 on")
    count = max(1, math.ceil(fraction * len(dataset)))
    images = []
    for index in range(count):
        try:
            image = to_bgr_uint8(dataset.load(index).image)
        except YoloNasError as exc:
            console.warn(f"calibration: skipping an image ({exc})")
            continue
        images.append(Letterbox.for_image(image.shape[:2], imgsz).apply(image))
    if not images:
        raise YoloNasError(f"none of the {count} calibration images of data={data} could be read")
    if len(images) < 32:
        console.warn(
            f"INT8 calibration on only {len(images)} images of data={data} ({split}): use a few hundred "
            "representative images for a deployable model"
        )
    return CalibrationSet(np.stack(images), data, split)


def calibration_for(data: str | None, fraction: float, imgsz: tuple[int, int], tool: str) -> tuple[str, CalibrationSet]:
    """(the data name used, its calibration set), announcing both; `tool` names who calibrates."""
    if data is None:
        console.warn(f"int8=True without data=: calibrating on {DEFAULT_DATA}")
    name = data or DEFAULT_DATA
    calib = calibration_set(name, fraction, imgsz)
    console.info(f"INT8: calibrating on {len(calib.inputs)} images of {name} ({calib.split} split) with {tool}")
    return name, calib
