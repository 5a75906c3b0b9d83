"""Drawing detections with OpenCV: boxes, "name 0.87" labels on a filled background, one colour per class;
tracked boxes get "id:7 name 0.87" labels, and tracks their trails (polylines through their past centres).

numpy + cv2 only (no torch), so that results can be drawn in light processes.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _make_palette(n: int = 64) -> tuple[tuple[int, int, int], ...]:
    """`n` well-spread BGR colours: hues stepped by the golden ratio, two alternating brightness levels."""
    colours = []
    for i in range(n):
        hue = (i * 0.6180339887) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0 if i % 2 == 0 else 0.8)
        colours.append((round(b * 255), round(g * 255), round(r * 255)))
    return tuple(colours)


PALETTE: tuple[tuple[int, int, int], ...] = _make_palette()


def colour(class_id: int) -> tuple[int, int, int]:
    """The fixed BGR colour of a class id (the palette repeats after 64 classes)."""
    return PALETTE[int(class_id) % len(PALETTE)]


def default_line_width(shape: tuple[int, ...]) -> int:
    """A box line width that grows with the image: 2 px up to ~1050 px (h + w), 4 px for 1920x1080."""
    return max(2, round((shape[0] + shape[1]) / 700))


def as_bgr_uint8(img: np.ndarray) -> np.ndarray:
    """`img` as a 3-channel uint8 BGR image: grey and BGRA are converted, 16-bit is scaled down.

    Returns `img` itself when it already is BGR uint8 (no copy)."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def label_text(name: str, confidence: float, show_conf: bool = True, track_id: int | None = None) -> str:
    """ "name 0.87", or "name" when the confidence is not shown; "id:7 " before it for a tracked box."""
    text = f"{name} {confidence:.2f}" if show_conf else name
    return text if track_id is None else f"id:{track_id} {text}"


def draw_label(img: np.ndarray, text: str, x1: int, y1: int, bg: tuple[int, int, int], line_width: int) -> None:
    """Draw `text` on a filled `bg` rectangle at the box corner (x1, y1), kept inside the image (in place)."""
    scale, thickness = line_width / 3, max(line_width - 1, 1)
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    h, w = img.shape[:2]
    box_h = th + baseline + 2
    x = min(max(x1, 0), max(w - tw - 2, 0))
    top = y1 - box_h if y1 - box_h >= 0 else max(min(y1, h - box_h), 0)  # above the box, else inside it
    cv2.rectangle(img, (x, top), (x + tw + 2, top + box_h), bg, -1, cv2.LINE_AA)
    fg = (0, 0, 0) if sum(c * k for c, k in zip(bg, (0.114, 0.587, 0.299))) > 150 else (255, 255, 255)
    cv2.putText(img, text, (x + 1, top + th + 1), _FONT, scale, fg, thickness, cv2.LINE_AA)


def draw_detections(
    img: np.ndarray,
    xyxy: np.ndarray,
    conf: np.ndarray,
    cls: np.ndarray,
    names: Mapping[int, str],
    line_width: int | None = None,
    labels: bool = True,
    show_conf: bool = True,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """An annotated BGR uint8 copy of `img` with boxes `xyxy` [N, 4] (pixels), `conf` [N] and `cls` [N].

    Labels read "name 0.87" ("name" when `show_conf` is False; none at all when `labels` is False), with
    "id:7 " in front when track `ids` [N] are given."""
    canvas = as_bgr_uint8(img)
    canvas = canvas.copy() if canvas is img else np.ascontiguousarray(canvas)
    lw = line_width or default_line_width(canvas.shape)
    track_ids: Iterable[int | None] = [None] * len(xyxy) if ids is None else [int(i) for i in ids]
    for (x1, y1, x2, y2), c, k, track_id in zip(np.round(xyxy).astype(int), conf, cls, track_ids):
        bg = colour(int(k))
        cv2.rectangle(canvas, (int(x1), int(y1)), (int(x2), int(y2)), bg, lw, cv2.LINE_AA)
        if labels:
            text = label_text(names.get(int(k), str(int(k))), float(c), show_conf, track_id)
            draw_label(canvas, text, int(x1), int(y1), bg, lw)
    return canvas


def draw_trails(img: np.ndarray, trails: Mapping[int, Sequence[tuple[float, float]]], line_width: int) -> np.ndarray:
    """Draw each track's trail (in place on a BGR uint8 `img`; returned): a polyline through its past box centres
    `trails[track id]` [(x, y), ...] (pixels, oldest first) in the colour of the track id."""
    for track_id, points in trails.items():
        if len(points) < 2:
            continue
        polyline = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [polyline], False, colour(track_id), line_width, cv2.LINE_AA)
    return img
