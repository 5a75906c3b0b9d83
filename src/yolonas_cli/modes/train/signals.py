"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal only sets a flag: the loop finishes the step it is in, saves `last.pt` and ends with exit code
130 and the command that resumes it. A second Ctrl-C stops at once (Python's KeyboardInterrupt), a second SIGTERM
ends the process (the default action); the last.pt of the previous epoch stays complete either way, because
every file is written to a temporary name and renamed. DataLoader workers ignore both signals
(`data.ignore_stop_signals`): the main process shuts them down.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from yolonas_cli.core import console

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A flag that the handlers installed by `installed()` set on the first stop signal."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        name = signal.Signals(signum).name
        console.warn(f"{name} received: stopping after this step and saving last.pt (again to stop at once)")
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle the stop signals for the enclosed run (only in the main thread, where Python delivers them);
        the previous handlers come back afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
