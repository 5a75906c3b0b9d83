"""The val plots, drawn with OpenCV only: the PR curve per class and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from yolonas_cli.core.files import atomic_imwrite
from yolonas_cli.metrics.curves import CONF_GRID, PRCurves

WHITE, BLACK, GREY, BLUE = (255, 255, 255), (0, 0, 0), (170, 170, 170), (180, 119, 31)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5, colour=BLACK, thickness: int = 1
) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def _vertical_text(img: np.ndarray, text: str, x: int, y_bottom: int, scale: float = 0.4) -> None:
    """Draw `text` rotated 90° counter-clockwise with its baseline end at (x, y_bottom)."""
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    patch = np.full((h + base + 2, w + 2, 3), 255, np.uint8)
    _text(patch, text, (1, h + 1), scale)
    patch = np.ascontiguousarray(cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE), dtype=np.uint8)
    y0, x0 = max(y_bottom - patch.shape[0], 0), max(x - patch.shape[1] // 2, 0)
    region = img[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
    np.minimum(region, patch[: region.shape[0], : region.shape[1]], out=region)


def plot_pr_curve(path: Path, curves: PRCurves, names: dict[int, str], ap50: np.ndarray, map50: float) -> Path:
    """BoxPR_curve.png: precision against recall at IoU 0.5 per class (grey; labelled when <= 20 classes)
    and their mean (blue). Returns the path."""
    w, h, m = 900, 700, 70
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - 2 * m - 160, h - 2 * m

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([m + x * pw, m + (1 - y) * ph], 1).round().astype(np.int32)

    _axes(img, m, pw, ph, "Recall", "Precision")
    for row in range(len(curves.classes)):
        cv2.polylines(img, [to_px(CONF_GRID, curves.pr[row])], False, GREY, 1, cv2.LINE_AA)
    if len(curves.classes):
        cv2.polylines(img, [to_px(CONF_GRID, curves.pr.mean(0))], False, BLUE, 3, cv2.LINE_AA)
    _text(img, f"all classes {map50:.3f} mAP@0.5", (m + pw + 10, m + 10), 0.45, BLUE)
    if len(curves.classes) <= 20:
        for row, c in enumerate(curves.classes):
            _text(img, f"{names[int(c)][:14]} {ap50[row]:.3f}", (m + pw + 10, m + 32 + 18 * row), 0.4)
    return atomic_imwrite(path, img)


def _axes(img: np.ndarray, m: int, pw: int, ph: int, xlabel: str, ylabel: str) -> None:
    cv2.rectangle(img, (m, m), (m + pw, m + ph), BLACK, 1)
    for i in range(11):
        v = i / 10
        x, y = int(m + v * pw), int(m + (1 - v) * ph)
        cv2.line(img, (x, m + ph), (x, m + ph + 5), BLACK, 1)
        cv2.line(img, (m - 5, y), (m, y), BLACK, 1)
        _text(img, f"{v:.1f}", (x - 10, m + ph + 20), 0.4)
        _text(img, f"{v:.1f}", (m - 35, y + 4), 0.4)
    _text(img, xlabel, (m + pw // 2 - 25, m + ph + 45), 0.55)
    _vertical_text(img, ylabel, 18, m + ph // 2 + 40, 0.55)


def plot_confusion_matrix(path: Path, matrix: np.ndarray, names: dict[int, str]) -> Path:
    """confusion_matrix.png: each true-class column normalised to 1 (white to blue), counts written in the
    cells; only classes that occur (row or column non-zero) plus background are shown. Returns the path."""
    nc = matrix.shape[0] - 1
    shown = [i for i in range(nc) if matrix[i].any() or matrix[:, i].any()] + [nc]
    sub = matrix[np.ix_(shown, shown)].astype(np.float64)
    norm = sub / np.maximum(sub.sum(0, keepdims=True), 1)
    labels = [names.get(i, str(i))[:16] if i < nc else "background" for i in shown]
    n = len(shown)
    cell = int(np.clip(720 // n, 14, 72))
    left, top = 150, 50
    img = np.full((top + n * cell + 150, max(left + n * cell + 30, 560), 3), 255, np.uint8)
    for r in range(n):
        for c in range(n):
            _cell(img, left + c * cell, top + r * cell, cell, norm[r, c], int(sub[r, c]))
    for i, label in enumerate(labels):
        _text(img, label, (25, top + i * cell + cell // 2 + 4), 0.4)
        _vertical_text(img, label, left + i * cell + cell // 2, top + n * cell + 115, 0.4)
    _text(img, "Confusion matrix (each true-class column sums to 1)", (left, 22), 0.5)
    _text(img, "True", (left + n * cell // 2 - 15, top + n * cell + 140), 0.5)
    _text(img, "Predicted", (left - 10, 42), 0.45)
    return atomic_imwrite(path, img)


def _cell(img: np.ndarray, x: int, y: int, size: int, value: float, count: int) -> None:
    colour = tuple(round(255 - value * (255 - c)) for c in BLUE)
    cv2.rectangle(img, (x, y), (x + size, y + size), colour, -1)
    cv2.rectangle(img, (x, y), (x + size, y + size), GREY, 1)
    if count and size >= 22:
        text_colour = WHITE if value > 0.5 else BLACK
        _text(img, str(count), (x + 3, y + size // 2 + 4), min(0.6, size / 70), text_colour)
