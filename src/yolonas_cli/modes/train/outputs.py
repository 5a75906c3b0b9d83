"""The files a training run writes beside its weights, each atomically (a temporary file, then a rename):

- `results.csv`: one row per finished epoch (`EpochRecord`): the epoch's mean training losses, the validation
  metrics of the EMA model (empty when the epoch was not validated), the fitness, the learning rate the schedule
  holds after the epoch (that of the next step) and the time the epoch's steps took;
- `results.png`: those columns as curves (OpenCV drawing, no plotting library);
- `args.yaml`: the run's arguments, loadable with `yolo-nas train cfg=args.yaml`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolonas_cli.core.files import atomic_imwrite, atomic_write_bytes

CSV_COLUMNS = (
    ("epoch", "epoch"),
    ("train/loss_cls", "loss_cls"),
    ("train/loss_iou", "loss_iou"),
    ("train/loss_dfl", "loss_dfl"),
    ("train/loss", "loss"),
    ("metrics/precision", "precision"),
    ("metrics/recall", "recall"),
    ("metrics/mAP50", "map50"),
    ("metrics/mAP50-95", "map"),
    ("fitness", "fitness"),
    ("lr", "lr"),
    ("time", "seconds"),
)
CURVES = (  # (record field, title) of each panel of results.png, row by row
    ("loss_cls", "train/loss_cls"),
    ("loss_iou", "train/loss_iou"),
    ("loss_dfl", "train/loss_dfl"),
    ("map50", "metrics/mAP50"),
    ("map", "metrics/mAP50-95"),
    ("lr", "lr"),
)


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (1-based). Validation fields are None when the epoch was not validated."""

    epoch: int
    loss_cls: float
    loss_iou: float
    loss_dfl: float
    loss: float
    precision: float | None
    recall: float | None
    map50: float | None
    map: float | None
    fitness: float | None
    lr: float
    seconds: float

    def to_plain(self) -> dict[str, Any]:
        """A dict of plain values (stored in checkpoints)."""
        return asdict(self)

    @staticmethod
    def from_plain(values: Mapping[str, Any]) -> EpochRecord:
        return EpochRecord(**{f.name: values[f.name] for f in fields(EpochRecord)})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def results_csv(records: Sequence[EpochRecord]) -> str:
    """The CSV text: a header of `CSV_COLUMNS` names, then one line per record."""
    lines = [",".join(name for name, _ in CSV_COLUMNS)]
    lines += [",".join(_cell(getattr(r, attr)) for _, attr in CSV_COLUMNS) for r in records]
    return "\n".join(lines) + "\n"


def write_results_csv(path: Path, records: Sequence[EpochRecord]) -> Path:
    return atomic_write_bytes(path, results_csv(records).encode())


def write_args_yaml(path: Path, args: Mapping[str, Any]) -> Path:
    """`args` as a flat YAML mapping (tuples become lists)."""
    import yaml  # lazy: only writing needs it

    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
    return atomic_write_bytes(path, yaml.safe_dump(plain, sort_keys=False).encode())


# --------------------------------------------------------------------------------------------------------
# results.png
# --------------------------------------------------------------------------------------------------------
PANEL_W, PANEL_H, MARGIN = 420, 300, 48
BLUE, GREY, BLACK, WHITE = (180, 119, 31), (200, 200, 200), (0, 0, 0), (255, 255, 255)


def plot_results(path: Path, records: Sequence[EpochRecord]) -> Path:
    """results.png: one panel per entry of `CURVES` (2 rows of 3), epoch on x; points where a value is missing
    (an epoch not validated) are skipped."""
    columns = 3
    rows = math.ceil(len(CURVES) / columns)
    image = np.full((rows * PANEL_H, columns * PANEL_W, 3), 255, np.uint8)
    epochs = np.array([r.epoch for r in records], np.float64)
    for index, (attr, title) in enumerate(CURVES):
        values = np.array([np.nan if getattr(r, attr) is None else getattr(r, attr) for r in records], np.float64)
        top, left = (index // columns) * PANEL_H, (index % columns) * PANEL_W
        _panel(image[top : top + PANEL_H, left : left + PANEL_W], title, epochs, values)
    return atomic_imwrite(path, image)


def _panel(canvas: np.ndarray, title: str, x: np.ndarray, y: np.ndarray) -> None:
    """One curve with its title, axes box and the value range written at the left."""
    width, height = PANEL_W - 2 * MARGIN, PANEL_H - 2 * MARGIN
    cv2.rectangle(canvas, (MARGIN, MARGIN), (MARGIN + width, MARGIN + height), BLACK, 1)
    cv2.putText(canvas, title, (MARGIN, MARGIN - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, BLACK, 1, cv2.LINE_AA)
    known = ~np.isnan(y)
    if not known.any():
        return
    low, high = float(y[known].min()), float(y[known].max())
    span = high - low or abs(high) or 1.0
    first, last = float(x.min()), float(x.max())
    px = MARGIN + (x - first) / ((last - first) or 1.0) * width
    py = MARGIN + height - (y - low) / span * height
    points = np.stack([px[known], py[known]], 1).round().astype(np.int32)
    cv2.polylines(canvas, [points], False, BLUE, 2, cv2.LINE_AA)
    for point in points:
        cv2.circle(canvas, (int(point[0]), int(point[1])), 3, BLUE, -1, cv2.LINE_AA)
    for value, y_px in ((high, MARGIN + 4), (low, MARGIN + height)):
        cv2.putText(canvas, f"{value:.4g}", (2, y_px), cv2.FONT_HERSHEY_SIMPLEX, 0.35, BLACK, 1, cv2.LINE_AA)
    for value, x_px in ((first, MARGIN), (last, MARGIN + width - 12)):
        label = f"{value:.0f}"
        cv2.putText(canvas, label, (x_px, MARGIN + height + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, BLACK, 1, cv2.LINE_AA)
