"""A model file made available to every Ray worker, verified by its sha256.

The driver hashes the file and puts its bytes in Ray's object store once (`ship_model`). A worker
(`fetch_model`) uses, in this order: the driver's own path when it sees the same file there (a shared file
system, or this machine), a copy in its weights cache under `ray/<sha256>/<name>`, else the bytes from the
object store, checked against the sha256 and written to that cache atomically. A file that does not match is
never loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolonas_cli.core.errors import UsageError, WeightsError
from yolonas_cli.core.files import atomic_write_bytes
from yolonas_cli.distributed.cluster import import_ray
from yolonas_cli.weights.download import sha256_file
from yolonas_cli.weights.resolve import cache_dir


@dataclass(frozen=True)
class ShippedModel:
    """A model file as the workers receive it: `data` is the object reference of its bytes."""

    name: str  # the file name (its suffix tells the format)
    path: str  # the absolute path on the driver
    sha256: str
    size: int
    data: Any  # ray.ObjectRef[bytes]


def ship_model(path: str | Path) -> ShippedModel:
    """Hash `path` (a weights file or a one-file export) and put its bytes in the object store."""
    path = Path(path).absolute()
    if not path.is_file():
        raise UsageError(
            f"ray= sends one model file to the workers and '{path}' is a folder: use the .pt weights or a "
            "one-file export (onnx, torchscript)"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return ShippedModel(path.name, str(path), digest, len(data), import_ray().put(data))


def fetch_model(shipped: ShippedModel, weights_dir: str | Path | None = None) -> Path:
    """A local path to the shipped file with the shipped sha256 (see the module docstring)."""
    driver_copy = Path(shipped.path)
    if _matches(driver_copy, shipped):
        return driver_copy
    cached = cache_dir(weights_dir) / "ray" / shipped.sha256 / shipped.name
    if _matches(cached, shipped):
        return cached
    data = import_ray().get(shipped.data)
    if len(data) != shipped.size or hashlib.sha256(data).hexdigest() != shipped.sha256:
        raise WeightsError(f"the copy of {shipped.name} received from the driver does not match its sha256")
    return atomic_write_bytes(cached, data)


def _matches(path: Path, shipped: ShippedModel) -> bool:
    try:
        return path.is_file() and path.stat().st_size == shipped.size and sha256_file(path) == shipped.sha256
    except OSError:
        return False
