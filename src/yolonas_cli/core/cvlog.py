"""OpenCV's own log silenced around the calls that report their failures themselves.

OpenCV prints warnings and errors of its codecs to stderr (`[ WARN:0@6.2] global grfmt_png.cpp:793 ... PNG
input buffer is incomplete`, or an encoder's multi-line error) even when the call only returns a failure that
the caller reports in one line of its own. `quiet()` sets OpenCV's log level to silent for the enclosed calls
and restores it when the last enclosing `quiet()` (of any thread) ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_guard = threading.Lock()
_state: dict[str, int] = {"depth": 0, "level": 0}


@contextmanager
def quiet() -> Iterator[None]:
    """OpenCV's log silent within the block (nested and concurrent blocks share one silence)."""
    import cv2

    logging = cv2.utils.logging
    with _guard:
        if _state["depth"] == 0:
            _state["level"] = logging.getLogLevel()
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        _state["depth"] += 1
    try:
        yield
    finally:
        with _guard:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                logging.setLogLevel(_state["level"])
