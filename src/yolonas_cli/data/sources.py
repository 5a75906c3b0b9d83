"""Streamed predict inputs: `open_source()` turns a `source=` value into a `Source` whose iterator yields one
`Frame` at a time (images are decoded when reached, videos read frame by frame by `frames`; nothing is held
in memory).

A bare file name of a bundled sample photo (`rocket.jpg`) that is not in the current folder means that
photo. Accepted: an image or video file, a directory (not recursive), a glob (`**` recursive), a `.txt` list of
paths, an http(s) URL of an image or video (downloaded first), a webcam index or an rtsp/rtmp/tcp/http stream
URL, a numpy array (HxWx3 BGR), a PIL image, and a list of these. numpy + cv2 only (no torch).
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.data.frames import (
    Frame,
    SourceItem,
    array_to_bgr,
    image_frames,
    stream_frames,
    video_frame_count,
    video_frames,
)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm", ".wmv")
LIST_SUFFIXES = (".txt",)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "tcp://", "udp://", "http://", "https://")
_GLOB_CHARS = ("*", "?", "[")

Downloader = Callable[[str, Path], Path]


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

    def frame_total(self) -> int | None:
        """How many frames iterating will yield: one per image, each video's frame count after `vid_stride`;
        None when a stream is among the items or a video's frame count is unknown."""
        total = 0
        for item in self.items:
            if item.kind == "stream":
                return None
            count = video_frame_count(item.target, self.vid_stride) if item.kind == "video" else 1
            if count is None:
                return None
            total += count
        return total

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
            yield from image_frames(item, index, total)
        elif item.kind == "video":
            yield from video_frames(item, index, total, self.vid_stride)
        elif item.kind == "array":
            yield Frame(array_to_bgr(item.target), item.name, index, total, "image", in_memory=True)
        else:
            yield from stream_frames(item, index, self.vid_stride, self.stream_buffer)


def default_source() -> Path:
    """The bundled sample photos folder (astronaut.png, chelsea.png, coffee.png, rocket.jpg)."""
    return Path(__file__).parents[1] / "assets"


def bundled_samples() -> list[Path]:
    """The bundled sample photos, sorted by name."""
    return sorted(p for p in default_source().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _bundled_sample(text: str) -> Path | None:
    """The bundled sample photo a bare file name (no folder part) names, e.g. "rocket.jpg", else None."""
    if Path(text).name != text:
        return None
    return next((p for p in bundled_samples() if p.name == text), None)


def _bundled_hint() -> str:
    """Where the bundled sample photos are and how to run on them (for a source that does not exist)."""
    names = ", ".join(p.name for p in bundled_samples())
    example = default_source() / "rocket.jpg"
    return (
        f"the bundled sample photos ({names}) are in {default_source()}: leave source out to run on all of "
        f"them, or give one, e.g. source={example}"
    )


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
        bundled = None if in_list else _bundled_sample(text)
        if bundled is not None:
            console.info(f"{text} is not in the current folder: using the bundled sample photo {bundled}")
            return [_file_item(bundled, strict=True)]
        raise UsageError(f"source '{text}' does not exist" + ("" if in_list else f"; {_bundled_hint()}"))

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
