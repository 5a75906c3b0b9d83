"""One process at a time per file: an exclusive, inter-process lock for a cache entry.

    with exclusive_lock(cache / "yolo_nas_s.pt", timeout=600, what="the download of yolo_nas_s.pt"):
        if not cached(...):
            download(...)

Two processes that fill the same cache entry at once would otherwise write into the same temporary file
(splicing their bytes) or record the hash of a half-written file. The lock is an advisory OS lock (`flock`
on POSIX, `msvcrt.locking` on Windows) on a hidden file beside the target, `.<name>.lock`: the OS releases it
when its holder dies, so a crashed process never leaves the cache locked. The holder deletes the lock file
before releasing it, and a waiter that then wins the lock on the deleted file notices (the path no longer
names the file it locked) and tries again, so no lock file is left behind and no two holders coexist.

The lock is re-entrant within one thread (a caller that holds it may call code that takes it again). A
waiter polls every POLL_SECONDS, says once that it is waiting, and gives up after `timeout` seconds with a
`YoloNasError` naming the lock file.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError

POLL_SECONDS = 0.1
_held: dict[tuple[str, int], int] = {}  # (lock file, thread id) -> nesting depth in this process
_held_guard = threading.Lock()


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of `target`: `.<name>.lock` in the same folder."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def exclusive_lock(
    target: str | os.PathLike[str], *, timeout: float, what: str | None = None, required: bool = True
) -> Iterator[bool]:
    """Hold the lock of `target` (which need not exist) for the enclosed block; see the module docstring.
    Yields True while the lock is held.

    `timeout`: the longest wait for another holder, in seconds; `what` names the work in messages.
    `required=False` is for work the lock only saves (a conversion another process may be making), never
    guards: when the wait runs out or the file system cannot lock, the block runs without the lock (yields
    False); what it writes must still go to a temporary name and be renamed."""
    path = lock_path(target)
    key = (str(path.absolute()), threading.get_ident())
    with _held_guard:
        depth = _held.get(key, 0)
        _held[key] = depth + 1
    try:
        if depth:
            yield True
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = _acquire(path, timeout, what or f"'{Path(target).name}'")
        except (YoloNasError, OSError):
            if required:
                raise
            yield False
            return
        try:
            yield True
        finally:
            _release(path, fd)
    finally:
        with _held_guard:
            if _held[key] == 1:
                del _held[key]
            else:
                _held[key] -= 1


def _acquire(path: Path, timeout: float, what: str) -> int:
    """Open and lock `path`; returns the descriptor. Bounded by `timeout` (polls every POLL_SECONDS)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if _try_lock(fd):
            if _still_names(path, fd):
                return fd
            _unlock(fd)
        os.close(fd)
        if time.monotonic() >= deadline:
            raise YoloNasError(
                f"waited {timeout:g} s for another yolo-nas process to finish {what}; if none is running, "
                f"delete {path} and run again"
            )
        if not told:
            console.info(f"Waiting for another yolo-nas process to finish {what} (lock {path})")
            told = True
        time.sleep(POLL_SECONDS)


def _still_names(path: Path, fd: int) -> bool:
    """True when `path` still names the file open as `fd` (the previous holder may have deleted it)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        return False


def _release(path: Path, fd: int) -> None:
    try:
        if sys.platform != "win32":  # Windows cannot delete an open file: there the lock file stays
            path.unlink(missing_ok=True)  # while still holding it: see the module docstring
    finally:
        _unlock(fd)
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover (exercised on Windows only)
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
