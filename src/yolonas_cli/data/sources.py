"""Streamed predict inputs: `open_source()` turns a `source=` value into a `Source` whose iterator yields one
`Frame` at a time (images are decoded when reached, videos read frame by frame; nothing is held in memory).

Accepted: an image or video file, a directory (not recursive), a glob (`**` recursive), a `.txt` list of
paths, an http(s) URL of an image or video (downloaded first), a webcam index or an rtsp/rtmp/tcp/http stream
URL, a numpy array (HxWx3 BGR), a PIL image, and a list of these. numpy + cv2 only (no torch).
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import cv2
import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm", ".wmv")
LIST_SUFFIXES = (".txt",)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "tcp://", "udp://", "http://", "https://")
DEFAULT_STREAM_FPS = 30.0
_GLOB_CHARS = ("*", "?", "[")
# JPEGs are decoded honouring their EXIF orientation (what photo viewers show); cv2.IMREAD_UNCHANGED would
# ignore it. JPEG has no alpha, so nothing else changes: grey stays grey.
_JPEG_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH

Downloader = Callable[[str, Path], Path]


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded input image.

    `image_bgr`: HxWx3 uint8 BGR, or what the file decodes to (grey HxW, BGRA, 16-bit are passed through).
    `path`: absolute file path, the stream target, or "image<i>.jpg" for in-memory images.
    `index`: 0-based position of the item (file, array or stream) in the source; `total`: number of items
    (None for streams). `frame`: 1-based number of the frame yielded from a video/stream (None for images);
    `frame_count`: frames a video will yield after `vid_stride` (None when unknown); `fps`: source fps."""

    image_bgr: np.ndarray
    path: str
    index: int
    total: int | None
    kind: str  # "image" | "video" | "stream"
    frame: int | None = None
    frame_count: int | None = None
    fps: float | None = None
    in_memory: bool = False

    @property
    def prefix(self) -> str:
        """The console prefix: "image 1/3 /abs/a.jpg: ", "video 1/1 (frame 5/40) /abs/v.mp4: ", or "0: "
        for streams and in-memory images."""
        if self.kind == "stream" or self.in_memory:
            return f"{self.index}: "
        if self.kind == "video":
            count = self.frame_count if self.frame_count is not None else "?"
            return f"video {self.index + 1}/{self.total} (frame {self.frame}/{count}) {self.path}: "
        return f"image {self.index + 1}/{self.total} {self.path}: "


@dataclass(frozen=True, eq=False)
class SourceItem:
    """One entry of a source: kind "image" | "video" (target: Path), "stream" (int or URL), "array"
    (ndarray or PIL image); `name` is what `Frame.path` shows."""

    kind: str
    name: str
    target: Any


class Source:
    """An iterable of `Frame`s over the items of one `source=` value; iterating again starts over.

    Files that cannot be decoded are skipped with a warning; if no file at all could be decoded the iterator
    raises YoloNasError at the end. A stream that cannot be opened raises YoloNasError."""

    def __init__(self, items: Sequence[SourceItem], description: str, vid_stride: int = 1, stream_buffer: bool = False):
        self.items = tuple(items)
        self.description = description
        self.vid_stride = vid_stride
        self.stream_buffer = stream_buffer

    def __len__(self) -> int:
        """The number of items (files, arrays, streams), not frames."""
        return len(self.items)

    def __repr__(self) -> str:
        return f"Source({self.description!r}, items={len(self.items)})"

    @property
    def has_stream(self) -> bool:
        """True when an item is a webcam or network stream (endless: no total)."""
        return any(item.kind == "stream" for item in self.items)

    @property
    def has_video(self) -> bool:
        return any(item.kind == "video" for item in self.items)

    def __iter__(self) -> Iterator[Frame]:
        files = decoded = 0
        total = len(self.items)
        for index, item in enumerate(self.items):
            yielded = 0
            for frame in self._frames(index, total, item):
                yielded += 1
                yield frame
            if item.kind in ("image", "video"):
                files += 1
                decoded += yielded > 0
        if files and not decoded:
            raise YoloNasError(
                f"none of the {files} file(s) of source {self.description} could be decoded; "
                "check that they are valid images or videos"
            )

    def _frames(self, index: int, total: int, item: SourceItem) -> Iterator[Frame]:
        if item.kind == "image":
            yield from _image_frames(item, index, total)
        elif item.kind == "video":
            yield from _video_frames(item, index, total, self.vid_stride)
        elif item.kind == "array":
            yield Frame(_array_to_bgr(item.target), item.name, index, total, "image", in_memory=True)
        else:
            yield from _stream_frames(item, index, self.vid_stride, self.stream_buffer)


def default_source() -> Path:
    """The bundled sample photos folder (astronaut.png, chelsea.png, coffee.png, rocket.jpg)."""
    return Path(__file__).parents[1] / "assets"


def open_source(
    source: Any,
    *,
    vid_stride: int = 1,
    stream_buffer: bool = False,
    downloader: Downloader | None = None,
    download_dir: str | os.PathLike[str] | None = None,
) -> Source:
    """Resolve `source` into a `Source` (see the module docstring for what is accepted).

    `vid_stride=N` keeps every Nth video/stream frame. `stream_buffer=False` reads streams in a background
    thread that keeps only the latest frame (low latency, drops frames); True reads every frame in order.
    URLs of images/videos are fetched with `downloader(url, dest) -> Path` (default: the project downloader)
    into `download_dir` (default: a folder in the system temp dir), reusing an earlier download.
    Raises UsageError for a missing path, an unsupported suffix or an empty folder/glob/list."""
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, int) or vid_stride < 1:
        raise UsageError(f"vid_stride must be a positive integer, got {vid_stride!r}")
    folder = Path(download_dir) if download_dir else Path(tempfile.gettempdir()) / "yolonas_sources"
    resolver = _Resolver(downloader or _default_downloader, folder)
    items = resolver.expand_any(source)
    return Source(items, _describe(source), vid_stride=vid_stride, stream_buffer=stream_buffer)


def _describe(source: Any) -> str:
    if isinstance(source, (list, tuple)):
        return f"<list of {len(source)}>"
    if isinstance(source, np.ndarray) or _is_pil(source):
        return "<in-memory image>"
    return f"'{source}'"


def _supported_text() -> str:
    return (
        f"supported: images {' '.join(IMAGE_SUFFIXES)}; videos {' '.join(VIDEO_SUFFIXES)}; "
        f"lists of paths {' '.join(LIST_SUFFIXES)}"
    )


def _default_downloader(url: str, dest: Path) -> Path:
    from yolonas_cli.weights.download import fetch  # lazy: keeps this module light

    return fetch(url, dest, description=f"Downloading {dest.name}")


class _Resolver:
    """Expands one `source=` value into `SourceItem`s (files are checked, not decoded)."""

    def __init__(self, downloader: Downloader, download_dir: Path):
        self.downloader = downloader
        self.download_dir = download_dir
        self.arrays = 0

    def expand_any(self, source: Any) -> list[SourceItem]:
        if isinstance(source, (list, tuple)):
            if not source:
                raise UsageError("source is an empty list; give at least one image, video or folder")
            return [item for element in source for item in self.expand_one(element)]
        return self.expand_one(source)

    def expand_one(self, source: Any) -> list[SourceItem]:
        if isinstance(source, bool) or source is None:
            raise UsageError(f"unsupported source {source!r}; give a path, URL, webcam index or image")
        if isinstance(source, int):
            return [SourceItem("stream", str(source), source)]
        if isinstance(source, np.ndarray) or _is_pil(source):
            return [self._array_item(source)]
        if isinstance(source, str):
            return self._expand_text(source)
        if isinstance(source, os.PathLike):
            return self._expand_path(os.fspath(source))
        raise UsageError(
            f"unsupported source type {type(source).__name__}; give a path, URL, webcam index, numpy array or PIL image"
        )

    def _array_item(self, source: Any) -> SourceItem:
        if isinstance(source, np.ndarray) and not (
            source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (1, 3, 4))
        ):
            raise UsageError(f"a numpy source must be an HxWx3 BGR image, got shape {source.shape}")
        item = SourceItem("array", f"image{self.arrays}.jpg", source)
        self.arrays += 1
        return item

    def _expand_text(self, text: str) -> list[SourceItem]:
        text = text.strip()
        lower = text.lower()
        if lower.startswith(("http://", "https://")) and _url_suffix(text) in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            return self._expand_path(str(self._download(text)))
        if lower.startswith(STREAM_SCHEMES):
            return [SourceItem("stream", text, text)]
        if text.isdigit() and not os.path.exists(text):
            return [SourceItem("stream", text, int(text))]
        return self._expand_path(text)

    def _download(self, url: str) -> Path:
        name = unquote(Path(urlparse(url).path).name)
        dest = self.download_dir / hashlib.sha256(url.encode()).hexdigest()[:16] / name
        if dest.is_file():
            return dest
        console.info(f"Downloading {url} to {dest}")
        return Path(self.downloader(url, dest))

    def _expand_path(self, text: str, in_list: bool = False) -> list[SourceItem]:
        path = Path(text).expanduser()
        if path.is_dir():
            return _nonempty([_file_item(p) for p in sorted(path.iterdir()) if _is_media(p)], path)
        if path.is_file():
            if path.suffix.lower() in LIST_SUFFIXES and not in_list:
                return self._expand_list(path)
            return [_file_item(path, strict=True)]
        if any(c in text for c in _GLOB_CHARS):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            return _nonempty([_file_item(p) for p in matches if p.is_file() and _is_media(p)], text)
        raise UsageError(f"source '{text}' does not exist")

    def _expand_list(self, list_file: Path) -> list[SourceItem]:
        items: list[SourceItem] = []
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
        for number, line in enumerate(lines, 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            try:
                items += self._expand_list_entry(entry, list_file.parent)
            except UsageError as exc:
                raise UsageError(f"{exc} (line {number} of {list_file})") from None
        return _nonempty(items, list_file)

    def _expand_list_entry(self, entry: str, base: Path) -> list[SourceItem]:
        if "://" in entry:
            return self._expand_text(entry)
        path = Path(entry).expanduser()
        return self._expand_path(str(path if path.is_absolute() else base / path), in_list=True)


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert")


def _url_suffix(url: str) -> str:
    return Path(urlparse(url).path).suffix.lower()


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def _file_item(path: Path, strict: bool = False) -> SourceItem:
    """The item of an existing image or video file; with `strict`, an unsupported suffix is a UsageError."""
    suffix = path.suffix.lower()
    if strict and suffix not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise UsageError(f"unsupported source suffix '{path.suffix}' of '{path}'; {_supported_text()}")
    kind = "video" if suffix in VIDEO_SUFFIXES else "image"
    return SourceItem(kind, os.path.abspath(path), path)


def _nonempty(items: list[SourceItem], where: Any) -> list[SourceItem]:
    if not items:
        raise UsageError(f"no images or videos found in '{where}'; {_supported_text()}")
    return items


def read_image(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Decode an image file as stored (grey, BGR, BGRA, 16-bit; JPEGs EXIF-rotated), or None when it cannot
    be read or decoded. Reads the bytes first, so non-ASCII paths work and OpenCV stays quiet."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    flags = _JPEG_FLAGS if Path(path).suffix.lower() in (".jpg", ".jpeg") else cv2.IMREAD_UNCHANGED
    return cv2.imdecode(data, flags)


def _image_frames(item: SourceItem, index: int, total: int) -> Iterator[Frame]:
    img = read_image(item.target)
    if img is None:
        console.warn(f"skipping '{item.name}': it cannot be decoded as an image")
        return
    yield Frame(img, item.name, index, total, "image")


def _array_to_bgr(obj: Any) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    return np.ascontiguousarray(np.asarray(obj.convert("RGB"))[:, :, ::-1])


def _valid_fps(fps: float) -> float | None:
    return float(fps) if fps and math.isfinite(fps) and fps > 0 else None


def _video_frames(item: SourceItem, index: int, total: int, stride: int) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(item.target))
    try:
        if not cap.isOpened():
            console.warn(f"skipping '{item.name}': it cannot be opened as a video")
            return
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frame_count = math.ceil(count / stride) if count > 0 else None
        fps = _valid_fps(cap.get(cv2.CAP_PROP_FPS))
        n = 0
        for img in _read_frames(cap, stride):
            n += 1
            yield Frame(img, item.name, index, total, "video", n, frame_count, fps)
        if n == 0:
            console.warn(f"video '{item.name}' has no frames")
    finally:
        cap.release()


def _read_frames(cap: cv2.VideoCapture, stride: int, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
    """Every `stride`-th frame of `cap` (the skipped ones are grabbed, not decoded) until it ends."""
    i = 0
    while (stop is None or not stop.is_set()) and cap.grab():
        if i % stride == 0:
            ok, img = cap.retrieve()
            if ok and img is not None:
                yield img
        i += 1


def _stream_frames(item: SourceItem, index: int, stride: int, buffered: bool) -> Iterator[Frame]:
    cap = cv2.VideoCapture(item.target)
    if not cap.isOpened():
        cap.release()
        raise YoloNasError(f"cannot open stream '{item.name}'; check the camera index or the stream URL")
    fps = _valid_fps(cap.get(cv2.CAP_PROP_FPS)) or DEFAULT_STREAM_FPS
    reader = _read_frames(cap, stride) if buffered else _LatestFrameReader(cap, stride)
    try:
        for n, img in enumerate(reader, 1):
            yield Frame(img, item.name, index, None, "stream", n, None, fps)
    finally:
        if not isinstance(reader, _LatestFrameReader) or reader.stop():
            cap.release()  # never under a reader thread that is still blocked in a read


class _LatestFrameReader:
    """Reads a capture in a daemon thread and hands out only the newest frame (older unread ones are dropped),
    so a slow consumer sees live frames instead of a growing backlog."""

    def __init__(self, cap: cv2.VideoCapture, stride: int):
        self._cap, self._stride = cap, stride
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yolonas-stream-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for img in _read_frames(self._cap, self._stride, self._stop):
                with self._cond:
                    self._latest = img
                    self._cond.notify()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not None or self._done)
                img, self._latest = self._latest, None
            if img is None:
                return
            yield img

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to stop and wait; False when it is still blocked in a read after `timeout`."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()
