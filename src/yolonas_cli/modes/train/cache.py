"""Training images as the original loads them (training-facts.md §9.1), optionally cached.

`load_resized(path, input_dim)`: decode (BGR, as OpenCV decodes; grey, BGRA and 16-bit images become BGR
uint8), then fit into `input_dim` = (h, w): r = min(h/h0, w/w0), new size (int(w0 r), int(h0 r)),
INTER_LINEAR, also when r > 1 (upscaling); no padding. Returns the image and its original (h0, w0), from
which the caller scales the boxes by the same r.

`ImageStore` serves those images by dataset index from the files, or from a cache:
- `ram`: every image decoded and resized once, in the main process before training (DataLoader workers
  inherit it); skipped with a warning when the estimate exceeds half of the available memory.
- `disk`: one `.npz` per image (the resized image and its original size) in a cache folder, written by
  whichever process loads the image first (a temporary file, then a rename: readers never see half a file),
  read back on later epochs and later runs. The folder holds `key.json` (what the entries depend on: the
  input size, the resize rule, the format) and is named after its hash; an entry's name hashes the image
  path, size and modification time, so a changed image is decoded again. Writing stops with a warning when
  the disk would keep less than `DISK_RESERVE` bytes free. Entries are read with `allow_pickle=False` and
  checked (dtype, shape), so a damaged cache cannot run code or crash training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.data.datasets.labels import CorruptSample
from yolonas_cli.data.frames import read_image
from yolonas_cli.engine.letterbox import to_bgr_uint8
from yolonas_cli.modes.train.augment import resize_by

__all__ = ["CACHE_MODES", "DISK_RESERVE", "DiskCache", "ImageStore", "PathTable", "cache_mode", "load_resized"]

HW = tuple[int, int]
CACHE_MODES = ("ram", "disk")
CACHE_FORMAT = 1
DISK_RESERVE = 1 << 30  # bytes left free on the cache's disk
RAM_SHARE = 0.5  # the RAM cache may use at most this share of the available memory
RAM_PROBE = 16  # images decoded to estimate the RAM cache's size
CACHE_THREADS = 8


def cache_mode(cache: object) -> str | None:
    """`cache=` as given by the user -> "ram", "disk" or None (True means "ram", as in Ultralytics)."""
    if cache is None or cache is False or (isinstance(cache, str) and cache.lower() in ("", "false", "none")):
        return None
    if cache is True or (isinstance(cache, str) and cache.lower() in ("true", "ram")):
        return "ram"
    if isinstance(cache, str) and cache.lower() == "disk":
        return "disk"
    raise UsageError(f"cache={cache} is not a cache mode: use cache=ram, cache=disk or cache=False")


def load_resized(path: Path, input_dim: HW) -> tuple[np.ndarray, HW]:
    """(image uint8 [h, w, 3] BGR fitted into `input_dim`, original (h0, w0)). Raises CorruptSample."""
    decoded = read_image(path)
    if decoded is None or decoded.size == 0:
        raise CorruptSample(f"{path} cannot be read or decoded as an image")
    try:
        image = to_bgr_uint8(decoded)
    except YoloNasError as exc:
        raise CorruptSample(f"{path}: {exc}") from None
    original = (int(image.shape[0]), int(image.shape[1]))
    ratio = min(input_dim[0] / original[0], input_dim[1] / original[1])
    return resize_by(image, ratio), original


# ---------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class PathTable:
    """Many paths in two arrays (file-system bytes and offsets): no Python object per path, so DataLoader
    workers that fork do not copy the table page by page when they touch it."""

    blob: np.ndarray  # uint8 [total bytes]
    offsets: np.ndarray  # int64 [n + 1]

    @staticmethod
    def of(paths: Sequence[Path]) -> PathTable:
        encoded = [os.fsencode(p) for p in paths]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return PathTable(np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        start, end = self.offsets[index], self.offsets[index + 1]
        return Path(os.fsdecode(self.blob[start:end].tobytes()))


# ---------------------------------------------------------------------------------------- disk cache


class DiskCache:
    """Resized images as `.npz` files in `root/<hash of the key>/` (see the module docstring)."""

    def __init__(self, root: Path, input_dim: HW):
        key = {"format": CACHE_FORMAT, "input_dim": list(input_dim), "resize": "fit, int sizes, INTER_LINEAR"}
        text = json.dumps(key, sort_keys=True)
        self.folder = root / hashlib.sha1(text.encode()).hexdigest()[:16]
        self.input_dim = input_dim
        self.writable = True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / "key.json").is_file():
                _write_atomic(self.folder / "key.json", text.encode())
        except OSError as exc:
            raise YoloNasError(
                f"cannot create the image cache in {self.folder} ({exc}); use cache=ram or "
                "cache=False, or make the folder writable"
            ) from None

    def entry(self, path: Path) -> Path | None:
        """The cache file of image `path` (None when the image cannot be stat'ed)."""
        try:
            stat = path.stat()
        except OSError:
            return None
        ident = f"{path.absolute()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.folder / f"{hashlib.sha1(os.fsencode(ident)).hexdigest()[:24]}.npz"

    def get(self, path: Path) -> tuple[np.ndarray, HW] | None:
        """The cached image and original size of `path`, or None (missing, stale or damaged entry)."""
        entry = self.entry(path)
        if entry is None or not entry.is_file():
            return None
        try:
            with np.load(entry, allow_pickle=False) as npz:
                image, original = npz["image"], npz["orig_hw"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if not self._valid(image, original):
            return None
        return image, (int(original[0]), int(original[1]))

    def _valid(self, image: np.ndarray, original: np.ndarray) -> bool:
        return (
            image.dtype == np.uint8
            and image.ndim == 3
            and image.shape[2] == 3
            and image.shape[0] <= self.input_dim[0]
            and image.shape[1] <= self.input_dim[1]
            and original.shape == (2,)
            and original.dtype.kind in "iu"
            and bool((original > 0).all())
        )

    def put(self, path: Path, image: np.ndarray, original: HW) -> None:
        """Store the entry of `path` atomically; stops for good (one warning) when the disk runs short."""
        entry = self.entry(path)
        if entry is None or not self.writable:
            return
        try:
            if shutil.disk_usage(self.folder).free - image.nbytes < DISK_RESERVE:
                self._stop(f"less than {DISK_RESERVE >> 20} MiB would stay free on its disk")
                return
            with _temporary_beside(entry) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, image=image, orig_hw=np.array(original, np.int64))
                os.replace(tmp, entry)
        except OSError as exc:
            self._stop(str(exc))

    def _stop(self, reason: str) -> None:
        self.writable = False
        console.warn(
            f"image cache {self.folder}: no more entries written ({reason}); images not cached yet "
            "are decoded from their files"
        )


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A unique temporary name next to `path`, removed afterwards if it still exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_atomic(path: Path, data: bytes) -> None:
    with _temporary_beside(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- store


class ImageStore:
    """Load-resized images by dataset index: from a RAM cache, a disk cache or the files."""

    def __init__(self, paths: PathTable, input_dim: HW, mode: str | None = None, cache_root: Path | None = None):
        self.paths = paths
        self.input_dim = input_dim
        self.mode = mode
        self.disk = DiskCache(cache_root or Path("."), input_dim) if mode == "disk" else None
        self.ram: list[tuple[np.ndarray, HW] | None] | None = None
        if mode == "ram":
            self.ram = _fill_ram_cache(paths, input_dim)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[np.ndarray, HW]:
        """(image uint8 [h, w, 3] BGR, original (h0, w0)) of image `index`. Raises CorruptSample."""
        if self.ram is not None and self.ram[index] is not None:
            return self.ram[index]  # type: ignore[return-value]
        path = self.paths[index]
        if self.disk is not None:
            cached = self.disk.get(path)
            if cached is not None:
                return cached
        image, original = load_resized(path, self.input_dim)
        if self.disk is not None:
            self.disk.put(path, image, original)
        return image, original


def _fill_ram_cache(paths: PathTable, input_dim: HW) -> list[tuple[np.ndarray, HW] | None] | None:
    """Every image load-resized (None where it cannot be read), or None when it would not fit in memory."""
    cache: list[tuple[np.ndarray, HW] | None] = [None] * len(paths)

    def fill(index: int) -> int:
        try:
            cache[index] = load_resized(paths[index], input_dim)
            return cache[index][0].nbytes  # type: ignore[index]
        except CorruptSample:
            return 0

    probe = min(len(paths), RAM_PROBE)
    with ThreadPoolExecutor(min(CACHE_THREADS, os.cpu_count() or 1)) as pool:
        probed = sum(pool.map(fill, range(probe)))
        needed, available = probed / max(probe, 1) * len(paths), available_memory()
        if available is not None and needed > RAM_SHARE * available:
            console.warn(
                f"cache=ram needs about {needed / 2**30:.1f} GiB, more than half of the "
                f"{available / 2**30:.1f} GiB available: images are not cached (try cache=disk)"
            )
            return None
        with console.count_progress("Caching images", len(paths) - probe) as advance:
            for _ in pool.map(fill, range(probe, len(paths))):
                advance()
    return cache


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), else free pages, else None."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None
