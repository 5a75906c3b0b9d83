"""Output sinks used outside the inference loop: the run folder, the video writer, the `predictions.json`
collector and the MOTChallenge track file writer.

Every file is first written under a temporary name in its destination folder and then renamed with
`os.replace` (see `core.files`), so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.files import atomic_write_bytes, temp_name, unlink_quietly
from yolonas_cli.data.frames import DEFAULT_STREAM_FPS
from yolonas_cli.data.plotting import as_bgr_uint8

if TYPE_CHECKING:
    from yolonas_cli.data.results import Result

_MAX_INCREMENT = 9999
RUNS_ROOT = Path("runs") / "detect"  # Ultralytics 8's runs/<task> (YOLO-NAS has one task: detect)


def make_run_dir(
    project: str | os.PathLike[str] | None, name: str | None, exist_ok: bool, mode: str, create: bool = False
) -> Path:
    """The run folder of a `mode` ("predict", "val", "train", ...), named as Ultralytics 8 names it:
    `<project>/<name>`, by default `runs/detect/<mode>`, numbered `predict2`, `predict3`, ... when it exists
    and `exist_ok` is False. Every mode that writes a run folder calls this, with its own name.

    Not created by default (sinks create it on their first write, so nothing appears when nothing is saved);
    `create=True` claims the folder at once with an exclusive mkdir, safe against concurrent runs."""
    base = Path(project) if project else RUNS_ROOT
    stem = str(name) if name else mode
    for n in range(1, _MAX_INCREMENT + 1):
        candidate = base / (stem if n == 1 else f"{stem}{n}")
        if exist_ok:
            if create:
                candidate.mkdir(parents=True, exist_ok=True)
            return candidate
        if candidate.exists():
            continue
        if not create:
            return candidate
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise YoloNasError(
        f"no free run folder name under {base} ({stem} to {stem}{_MAX_INCREMENT} exist); pass name= or exist_ok=True"
    )


class VideoSink:
    """Writes annotated frames to `<run_dir>/<stem>.avi` (MJPG) at `fps / vid_stride`.

    Frames go to a hidden temp file that is renamed to the final name by `close()`; `abort()` discards it.
    Used as a context manager it closes on normal exit and on KeyboardInterrupt (a stopped webcam recording
    is kept) and aborts on any other error. The writer opens on the first frame, with that frame's size;
    later frames of another size are resized to it."""

    FOURCC = "MJPG"
    SUFFIX = ".avi"

    def __init__(self, run_dir: str | os.PathLike[str], stem: str, fps: float | None, vid_stride: int = 1):
        self.path = Path(run_dir) / f"{stem}{self.SUFFIX}"
        self.fps = _output_fps(fps, vid_stride)
        self.frames = 0
        self._tmp = temp_name(self.path, self.SUFFIX)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, img: np.ndarray) -> None:
        """Append one frame (BGR uint8; grey, BGRA and 16-bit are converted)."""
        img = as_bgr_uint8(img)
        writer = self._writer or self._open((img.shape[1], img.shape[0]))
        if (img.shape[1], img.shape[0]) != self._size:
            img = cv2.resize(img, self._size)
        writer.write(img)
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and rename it to `self.path`; returns it, or None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the temp file (the final name is never created)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        unlink_quietly(self._tmp)

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*self.FOURCC), self.fps, size)
        if not writer.isOpened():
            unlink_quietly(self._tmp)
            raise YoloNasError(f"cannot open a {self.FOURCC} video writer for {self.path}")
        self._writer, self._size = writer, size
        return writer

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


def _output_fps(fps: float | None, vid_stride: int) -> float:
    """The source fps (30 when unknown) divided by `vid_stride`, at least 1."""
    if not fps or not math.isfinite(fps) or fps <= 0:
        fps = DEFAULT_STREAM_FPS
    return max(fps / max(int(vid_stride), 1), 1.0)


class StreamedFile:
    """A text file written piece by piece into a hidden temp file beside `path`, in bounded memory: the first
    `write` creates it (and its folder) and writes `head`; `close()` writes `tail` and renames it into place
    (atomic), or writes `empty` there when nothing was written; `abort()` deletes it. As a context manager it
    closes on success or Ctrl-C (what was written is complete) and aborts on any other error."""

    def __init__(self, path: str | os.PathLike[str], head: str = "", tail: str = "", empty: bytes = b""):
        self.path = Path(path)
        self._head, self._tail, self._empty = head, tail, empty
        self._tmp = temp_name(self.path)
        self._file: Any = None

    def write(self, text: str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in close/abort)
            self._file.write(self._head)
        self._file.write(text)

    def close(self) -> Path:
        """Finish the file, rename it into place, return its path."""
        if self._file is None:
            return atomic_write_bytes(self.path, self._empty)
        try:
            self._file.write(self._tail)
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._file = None
        return self.path

    def abort(self) -> None:
        """Discard what was written (the final name is never created)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        unlink_quietly(self._tmp)

    def __enter__(self) -> StreamedFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


class JsonSink(StreamedFile):
    """Streams one entry per image into `<run_dir>/predictions.json`, in bounded memory.

    Entries go to a hidden temp file as they come; `close()` finishes the JSON list and renames the file into
    place (atomic), `abort()` deletes it. Entry: {path, height, width, detections: [{box: [x1, y1, x2, y2]
    (pixels), confidence, class, name}]} (see `json_entry`), plus the `extra` keys given to `add`."""

    def __init__(self, run_dir: str | os.PathLike[str], filename: str = "predictions.json"):
        super().__init__(Path(run_dir) / filename, head="[", tail="\n]\n", empty=b"[]\n")
        self.count = 0

    def add(self, result: Result, extra: dict[str, Any] | None = None) -> None:
        """Append the entry of one image (or video frame), with the `extra` keys (e.g. {"frame": 12})."""
        entry = {**json_entry(result), **(extra or {})}
        self.write(("," if self.count else "") + "\n" + json.dumps(entry))
        self.count += 1


def json_entry(result: Result, decimals: int = 3) -> dict[str, Any]:
    """The `predictions.json` entry of one result; boxes in original-image pixels; each detection has its track
    `id` once tracked."""
    boxes = result.boxes.numpy()
    ids = [None] * len(boxes) if boxes.id is None else [int(i) for i in boxes.id]
    detections = []
    for xyxy, c, k, track_id in zip(boxes.xyxy, boxes.conf, boxes.cls, ids):
        detection: dict[str, Any] = {
            "box": [round(float(v), decimals) for v in xyxy],
            "confidence": round(float(c), 5),
            "class": int(k),
            "name": result.name_of(k),
        }
        if track_id is not None:
            detection["id"] = track_id
        detections.append(detection)
    h, w = result.orig_shape
    return {"path": result.path, "height": int(h), "width": int(w), "detections": detections}


class MotSink(StreamedFile):
    """Streams the tracks of one video (or image sequence) into a MOTChallenge text file, in bounded memory.

    One line per tracked box: `frame,id,x,y,w,h,conf,-1,-1,-1` (frame from 1, the box's top-left corner and its
    size in pixels; the MOTChallenge 2D layout, whose last three columns are unused world coordinates). Lines go
    to a hidden temp file; `close()` renames it to `path` (atomic; an empty file when no box was tracked),
    `abort()` deletes it."""

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(path)
        self.lines = 0

    def add(self, frame: int, result: Result) -> None:
        """Append the tracked boxes of `result` (one frame) as frame number `frame`; untracked results add none."""
        boxes = result.boxes.numpy()
        if boxes.id is None:
            return
        for (x1, y1, x2, y2), track_id, conf in zip(boxes.xyxy.tolist(), boxes.id.tolist(), boxes.conf.tolist()):
            self.write(mot_line(frame, int(track_id), (x1, y1, x2 - x1, y2 - y1), conf))
            self.lines += 1


def mot_line(frame: int, track_id: int, xywh: tuple[float, float, float, float], conf: float) -> str:
    """One MOTChallenge line: `frame,id,x,y,w,h,conf,-1,-1,-1` (box to 2 decimals, conf to 5), newline-ended."""
    x, y, w, h = xywh
    return f"{frame},{track_id},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{conf:.5f},-1,-1,-1\n"


def warn_unsaved(failed: int, seen: int, unit: str) -> None:
    """The closing warning of a run in which `failed` of the `seen` inputs (`unit`: "images or frames") had
    outputs that could not be saved (each was warned about when it happened); nothing when none failed."""
    if failed:
        console.warn(
            f"{failed} of the inputs ({seen} {unit} in all) had outputs that could not be saved; see the warnings above"
        )
