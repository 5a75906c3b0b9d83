"""Decoding what a source names, one frame at a time: image files (`read_image`), videos and streams (every
`vid_stride`-th frame; a live stream through a reader thread that keeps only the newest frame), and in-memory
images. Each comes out as a `Frame`. numpy + cv2 only (no torch).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError

DEFAULT_STREAM_FPS = 30.0
# JPEGs are decoded honouring their EXIF orientation (what photo viewers show); cv2.IMREAD_UNCHANGED would
# ignore it. JPEG has no alpha, so nothing else changes: grey stays grey.
_JPEG_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


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


def read_image(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Decode an image file as stored (grey, BGR, BGRA, 16-bit; JPEGs EXIF-rotated), or None when it cannot
    be read or decoded. Reads the bytes first, so non-ASCII paths work and OpenCV stays quiet."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return decode_image(data, jpeg=Path(path).suffix.lower() in (".jpg", ".jpeg"))


def decode_image(data: bytes | np.ndarray, jpeg: bool | None = None) -> np.ndarray | None:
    """Decode encoded image bytes as `read_image` decodes a file (None when they are not a decodable image).

    `jpeg`: decode as a JPEG (EXIF-rotated) or as stored; None tells JPEG by its magic bytes (a file is told by
    its suffix)."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buffer.size == 0:
        return None
    if jpeg is None:
        jpeg = bytes(buffer[:3]) == b"\xff\xd8\xff"
    return cv2.imdecode(buffer, _JPEG_FLAGS if jpeg else cv2.IMREAD_UNCHANGED)


def image_frames(item: SourceItem, index: int, total: int) -> Iterator[Frame]:
    img = read_image(item.target)
    if img is None:
        console.warn(f"skipping '{item.name}': it cannot be decoded as an image")
        return
    yield Frame(img, item.name, index, total, "image")


def array_to_bgr(obj: Any) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    return np.ascontiguousarray(np.asarray(obj.convert("RGB"))[:, :, ::-1])


def _valid_fps(fps: float) -> float | None:
    return float(fps) if fps and math.isfinite(fps) and fps > 0 else None


def video_frames(item: SourceItem, index: int, total: int, stride: int) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(item.target))
    try:
        if not cap.isOpened():
            console.warn(f"skipping '{item.name}': it cannot be opened as a video")
            return
        frame_count = _strided_count(cap, stride)
        fps = _valid_fps(cap.get(cv2.CAP_PROP_FPS))
        n = 0
        for img in _read_frames(cap, stride):
            n += 1
            yield Frame(img, item.name, index, total, "video", n, frame_count, fps)
        if n == 0:
            console.warn(f"video '{item.name}' has no frames")
    finally:
        cap.release()


def _strided_count(cap: cv2.VideoCapture, stride: int) -> int | None:
    """The frames an open capture will yield at `stride` (from its container's frame count), or None."""
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return math.ceil(count / stride) if count > 0 else None


def video_frame_count(path: str | os.PathLike[str], stride: int = 1) -> int | None:
    """The frames `video_frames` will yield from the video at `path` with `stride`, as its container states
    it, or None when unknown (or the file cannot be opened)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return _strided_count(cap, stride) if cap.isOpened() else None
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


def stream_frames(item: SourceItem, index: int, stride: int, buffered: bool) -> Iterator[Frame]:
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
