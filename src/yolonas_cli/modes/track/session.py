"""Tracking predict results frame by frame: which frames form one sequence, the tracker of each sequence, the
MOTChallenge frame numbers, the tracked `Result`s and the trails drawn behind each track.

    session = TrackSession(load_tracker_config("bytetrack.yaml"))
    for frame, result in engine.stream(source):
        tracked = session.track(frame, result)       # boxes [M, 7]: x1, y1, x2, y2, track id, conf, class

Sequences: each video file is one, each stream (webcam, rtsp, ...) is one, and the images of a source, in
source order, are one (a folder of frames is a clip; a single image is a clip of one frame, where every object
confirmed gets a new id); where videos come between images (a folder holding both), each run of consecutive
images is one. At the first frame of a sequence the tracker starts afresh (ids from 1) with the
sequence's frame rate (the video's fps divided by `vid_stride`; 30 when unknown), unless `persist`: then the
tracker of the previous sequence, or of an earlier `track()` call holding the same session, goes on (as
Ultralytics' `persist=True`).

A tracked result holds only the boxes the tracker reports for this frame (confirmed tracks matched by a
detection: their Kalman-filtered box, the detection's confidence and class), so `boxes.is_track` is always
True and `boxes.id` is never None, possibly empty. (Ultralytics leaves the untracked detections of a frame where
no track is reported; here such a frame has no boxes.)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from yolonas_cli.data.frames import DEFAULT_STREAM_FPS, Frame
from yolonas_cli.data.results import Result
from yolonas_cli.modes.track import make_tracker
from yolonas_cli.modes.track.bytetrack import ByteTrack
from yolonas_cli.modes.track.config import BotSortConfig, TrackerConfig

__all__ = ["TRAIL_LENGTH", "TrackSession", "Trails", "sequence_key"]

TRAIL_LENGTH = 30  # centres kept per track for its trail (one second at 30 fps)


def sequence_key(frame: Frame, previous: Hashable = None) -> Hashable:
    """What tells sequences apart: (kind, item index, path) for a video or stream; ("images", index of its first
    image) for a run of consecutive images of a source (`previous`: the key of the frame before)."""
    if frame.kind != "image":
        return (frame.kind, frame.index, frame.path)
    if isinstance(previous, tuple) and previous[0] == "images":
        return previous
    return ("images", frame.index)


def frame_rate(frame: Frame, vid_stride: int) -> float:
    """The rate at which the tracker sees frames: the video's or stream's fps / `vid_stride`, else 30."""
    fps = frame.fps if frame.kind != "image" and frame.fps else DEFAULT_STREAM_FPS
    return max(fps / max(vid_stride, 1), 1.0)


class Trails:
    """The last `length` box centres of each track, oldest first, for drawing; bounded: a track not seen for
    `length` frames is forgotten."""

    def __init__(self, length: int = TRAIL_LENGTH) -> None:
        self.length = length
        self.reset()

    def reset(self) -> None:
        self._points: dict[int, deque[tuple[float, float]]] = {}
        self._last_seen: dict[int, int] = {}
        self._frame = 0

    def add(self, ids: np.ndarray, xyxy: np.ndarray) -> None:
        """One frame: track `ids` [M] with boxes `xyxy` [M, 4] (pixels)."""
        self._frame += 1
        for track_id, (x1, y1, x2, y2) in zip(ids.tolist(), xyxy.tolist()):
            key = int(track_id)
            self._points.setdefault(key, deque(maxlen=self.length)).append(((x1 + x2) / 2, (y1 + y2) / 2))
            self._last_seen[key] = self._frame
        for key in [k for k, seen in self._last_seen.items() if self._frame - seen >= self.length]:
            del self._points[key], self._last_seen[key]

    def points(self, ids: Iterable[int] | None = None) -> dict[int, Sequence[tuple[float, float]]]:
        """Track id -> its recent centres [(x, y), ...], oldest first; only of `ids` when given (the tracks of
        the current frame: a lost track's trail is not drawn)."""
        keep = None if ids is None else {int(i) for i in ids}
        return {key: tuple(points) for key, points in self._points.items() if keep is None or key in keep}


@dataclass
class TrackTiming:
    """Milliseconds spent in the tracker (update and trails) and the frames they cover."""

    total_ms: float = 0.0
    frames: int = 0

    @property
    def per_frame(self) -> float:
        return self.total_ms / max(self.frames, 1)


class TrackSession:
    """The tracker over the frames of one `track` run (or of several `track(..., persist=True)` calls)."""

    def __init__(self, config: TrackerConfig, persist: bool = False, vid_stride: int = 1) -> None:
        self.config = config
        self.persist = persist
        self.vid_stride = vid_stride
        self.tracker: ByteTrack | None = None
        self.sequence: Hashable = None
        self.frame_number = 0  # MOTChallenge frame number of the last frame, in its sequence (from 1)
        self.trails = Trails()
        self.timing = TrackTiming()

    @property
    def name(self) -> str:
        """The tracker's name: bytetrack or botsort."""
        return self.config.tracker_type

    def track(self, frame: Frame, result: Result) -> Result:
        """Track one frame's detections (`result` from the engine, boxes [N, 6]); returns the same result with
        its boxes replaced by the tracked ones [M, 7] (on the same device, clipped to the image) and
        `speed["track"]` (ms)."""
        clock = time.perf_counter()
        self._enter(frame)
        boxes = result.boxes.numpy()
        rows = self._tracker().update(boxes.xyxy, boxes.conf, boxes.cls, frame=frame.image_bgr)
        data = result.boxes.data
        tracked = rows[:, :7].astype(np.float32)
        result.update(boxes=torch.as_tensor(tracked, device=data.device) if isinstance(data, torch.Tensor) else tracked)
        self.trails.add(rows[:, 4], np.asarray(result.boxes.numpy().xyxy))
        spent = (time.perf_counter() - clock) * 1e3
        result.speed["track"] = spent
        self.timing.total_ms += spent
        self.timing.frames += 1
        return result

    def _enter(self, frame: Frame) -> None:
        """Start a new sequence at `frame` when it belongs to another one than the last frame; number the frame."""
        key = sequence_key(frame, self.sequence)
        if key != self.sequence:
            if self.tracker is None or not self.persist:
                self.tracker = self._new_tracker(frame_rate(frame, self.vid_stride))
                self.trails.reset()
            self.sequence = key
            self.frame_number = 0
        if frame.kind == "image" or frame.frame is None:
            self.frame_number += 1
        else:  # the video's own frame number (vid_stride skips frames)
            self.frame_number = (frame.frame - 1) * self.vid_stride + 1

    def _tracker(self) -> ByteTrack:
        assert self.tracker is not None  # made by _enter
        return self.tracker

    def _new_tracker(self, rate: float) -> ByteTrack:
        return make_tracker(self.config, rate)

    def describe(self) -> str:
        """e.g. "bytetrack" or "botsort (gmc sparseOptFlow)"."""
        if isinstance(self.config, BotSortConfig):
            return f"{self.name} (camera motion {self.config.gmc_method})"
        return self.name
