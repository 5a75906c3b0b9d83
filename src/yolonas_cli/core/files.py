"""Atomic writes of exported files and folders: write beside the destination, rename at the end.

A failed or interrupted export leaves the previous file (or nothing), never half a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(dest: Path) -> Iterator[Path]:
    """Yield a temporary path in dest's folder (hidden, same suffix); on success it replaces `dest`, on
    failure it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=dest.suffix, dir=dest.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, _default_mode(0o666))  # mkstemp makes 0600; give the usual umask-based mode
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)


def _default_mode(base: int) -> int:
    """`base` (0o666 for files, 0o777 for folders) less the process umask."""
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
