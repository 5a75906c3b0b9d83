"""Atomic writes: every file or folder is written under a hidden temporary name beside its destination and
renamed into place with `os.replace`, so an interrupted or failed write leaves the previous file (or
nothing) under the final name, never half a file. Atomic against interruption and errors; against power
loss only with `fsync=True`.

- `atomic_file(dest)`: a context that yields a temporary path for any writer (torch.save, onnx.save, ...);
- `atomic_write_chunks` / `atomic_write_bytes`: content written here, piece by piece or at once;
- `atomic_imwrite`: an image encoded by OpenCV, written atomically;
- `atomic_dir(dest)`: a whole folder (an OpenVINO model);
- `temp_name`: the temporary name itself, for writers that stay open across calls (videos, streamed JSON).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from yolonas_cli.core import cvlog
from yolonas_cli.core.errors import YoloNasError


def temp_name(path: Path, suffix: str = ".tmp") -> Path:
    """A unique hidden temporary name next to `path`: `.<name>.<pid>.<random><suffix>`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def unlink_quietly(path: Path) -> None:
    """Remove `path` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_file(dest: str | os.PathLike[str], *, fsync: bool = False, keep_mode: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest` (same suffix, not yet created) for the caller to write; on normal
    exit it replaces `dest`, on any exception (KeyboardInterrupt included) it is removed.

    The file gets the mode its writer creates it with (0o666 less the umask), or, with `keep_mode`, the mode of
    the `dest` it replaces. `fsync=True` flushes it to disk before the rename. The folder is created."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(dest, dest.suffix or ".tmp")
    mode = dest.stat().st_mode & 0o777 if keep_mode and dest.exists() else None
    try:
        yield temp
        if fsync:
            _fsync(temp)
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, dest)
    finally:
        unlink_quietly(temp)


def atomic_write_chunks(path: str | os.PathLike[str], chunks: Iterable[bytes], *, fsync: bool = False) -> Path:
    """Write `chunks` one after another to `path` atomically (the content is never held whole in memory).

    An OSError names `path` itself (not the temporary file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(path, fsync=fsync) as temp:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically; creates the folder."""
    return atomic_write_chunks(path, (data,), fsync=fsync)


JPEG_MAX_SIDE = 65500
"""The largest image side the JPEG format (libjpeg) can encode."""


def atomic_imwrite(path: str | os.PathLike[str], img: np.ndarray, ext: str | None = None) -> Path:
    """Encode `img` (BGR) as `ext` (default: the suffix of `path`, e.g. ".jpg") and write it atomically.

    An image OpenCV cannot encode is one YoloNasError naming its size and the file (OpenCV's own multi-line
    log of the failure is silenced)."""
    import cv2

    path = Path(path)
    ext = ext or path.suffix or ".jpg"
    ext = ext if ext.startswith(".") else f".{ext}"
    try:
        with cvlog.quiet():
            ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        ok = False
    if not ok:
        size = "x".join(map(str, img.shape[:2]))
        hint = f" (JPEG sides are at most {JPEG_MAX_SIDE} pixels)" if ext.lower() in (".jpg", ".jpeg") else ""
        raise YoloNasError(f"cannot encode a {size} image as '{ext}' for {path}{hint}")
    return atomic_write_bytes(path, buf.tobytes())


def _default_mode(base: int) -> int:
    """`base` (0o777 for folders) less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; on success it takes `dest`'s place (the old one is removed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".", suffix=f".{dest.name}", dir=dest.parent))
    old = dest.with_name(f".{dest.name}.old")
    try:
        yield temp
        os.chmod(temp, _default_mode(0o777))
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(temp, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def size_mb(path: Path) -> float:
    """Size of a file, or of every file under a folder, in MB."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6
