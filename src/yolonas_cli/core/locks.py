"""A lock between processes on one file (`file_lock`): while one process builds a cached file, others wait for
it instead of building it a second time.

The lock is advisory (`fcntl.flock` on POSIX, `msvcrt.locking` on Windows) and only saves work: whatever it
guards must still be written to a temporary name and renamed (`core.files`), so that a file system without
locks (some network file systems) or a wait that runs out can waste time but never corrupt anything.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_SECONDS = 0.1


@contextmanager
def file_lock(path: Path, timeout: float = 600.0) -> Iterator[bool]:
    """Hold the lock file `path` for the enclosed block, waiting at most `timeout` seconds for another holder.

    Yields True when the lock is held, False when it could not be had (timed out, or no locking here): the
    caller goes on either way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        held = _acquire(handle.fileno(), timeout)
        try:
            yield held
        finally:
            if held:
                _release(handle.fileno())


def _acquire(fd: int, timeout: float) -> bool:
    attempts = max(1, int(timeout / POLL_SECONDS) + 1)  # bounded wait
    for _ in range(attempts):
        try:
            if _try_lock(fd):
                return True
        except OSError:
            return False  # no locking on this file system
        time.sleep(POLL_SECONDS)
    return False


def _try_lock(fd: int) -> bool:
    """One non-blocking attempt: True when the lock is now ours, False while another process holds it."""
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            return True
        except PermissionError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
