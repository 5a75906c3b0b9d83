"""Termination signals handled like Ctrl-C: one mechanism for every long-running mode.

A service manager stops a process with SIGTERM, and closing its terminal sends SIGHUP; by default either
kills Python on the spot, leaving temporary files, half-finished JSON and temporary folders behind. Inside
`terminations_as_interrupts()` (the CLI wraps every mode in it) they raise `Terminated` in the main thread
instead. `Terminated` is a `KeyboardInterrupt`, so everything that already handles Ctrl-C handles them the
same way: `finally` blocks and context managers remove temporary files and folders, and a mode that keeps
its work on Ctrl-C keeps it here too. A mode writes its results and re-raises:

    try:
        for batch in work:
            ...
    except KeyboardInterrupt:          # Ctrl-C, SIGTERM or SIGHUP
        save_what_is_done()            # e.g. finish predictions.json, write last.pt
        console.warn(f"interrupted after {done} images")
        raise

and the CLI turns the exception into the exit status with `exit_code(exc)`: 130 for Ctrl-C (SIGINT), 143
for SIGTERM, 129 for SIGHUP (128 + the signal number, as shells report them).

Only the first termination signal raises; later ones are ignored until the block ends, so the cleanup that
the first one started is not cut short (a second Ctrl-C still interrupts, and SIGKILL always works). Outside
the main thread, where Python cannot install handlers, the context does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

TERMINATIONS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals handled (SIGHUP does not exist on Windows)."""
INTERRUPT_EXIT_CODE = 128 + signal.SIGINT


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP inside `terminations_as_interrupts()`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(exc: BaseException) -> int:
    """The exit status for an interruption: 128 + the signal number (130 for a plain KeyboardInterrupt)."""
    return 128 + exc.signum if isinstance(exc, Terminated) else INTERRUPT_EXIT_CODE


def describe(exc: BaseException) -> str:
    """'interrupted' for Ctrl-C, 'terminated by SIGTERM' (or SIGHUP) for a termination signal."""
    return f"terminated by {signal.Signals(exc.signum).name}" if isinstance(exc, Terminated) else "interrupted"


@contextmanager
def terminations_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Terminated` (once); the previous handlers are restored
    afterwards. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:  # the cleanup of the first signal is running: let it finish
            return
        fired.append(signum)
        raise Terminated(signum)

    previous: dict[signal.Signals, Any] = {sig: signal.signal(sig, handler) for sig in TERMINATIONS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
