"""Showing images in an OpenCV window (`show=True`, `Result.show()`), and telling why that is impossible on
a headless machine before trying (a GUI toolkit without a display can abort the whole process).

numpy + cv2 only.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache

import cv2
import numpy as np

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc closes the windows and stops a predict run


@lru_cache(maxsize=1)
def _opencv_gui() -> str:
    """The GUI toolkit OpenCV was built with ("QT5", "GTK3", "WIN32UI", "COCOA", ...; "NONE" when headless)."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return value.strip() or "NONE"
    return "NONE"


def display_problem() -> str | None:
    """Why no window can be shown here (one phrase), or None when it can."""
    if _opencv_gui().upper() == "NONE":
        return "this OpenCV has no GUI support (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    return None


def show_image(title: str, image: np.ndarray, wait_ms: int) -> bool:
    """Show `image` (BGR) in the window `title` and wait `wait_ms` ms for a key (0: until a key is pressed).

    Returns False when q or Esc was pressed (the caller stops), else True. Call only when `display_problem()`
    is None."""
    cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    cv2.imshow(title, image)
    key = cv2.waitKey(wait_ms) & 0xFF
    return key not in QUIT_KEYS


def close_window(title: str) -> None:
    """Close the window `title`."""
    cv2.destroyWindow(title)


def close_windows() -> None:
    """Close every window this process opened."""
    cv2.destroyAllWindows()
