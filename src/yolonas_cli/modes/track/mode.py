"""`yolo-nas track`: predict, then a tracker gives each detection of a video, stream or image sequence a track
id that follows the object from frame to frame (ByteTrack, or BoT-SORT without ReID; `tracker=` names the YAML).
`NAS.track` runs the same `track_stream`.

    yolo-nas track model=yolo_nas_s.pt source=clip.mp4 tracker=botsort.yaml save_txt save_json

The loop is predict's (`modes.predict.run_frames`: sources, engine, batching, slicing, window, console); the
per-frame handler `TrackOutputs` tracks each result (`session.TrackSession`: sequences, resets, `persist`)
before saving it. Outputs in `runs/detect/track` (`track2`, ...), as predict's except:

- annotated images and videos: "id:7 person 0.87" labels and the trail of each track of the frame (its last 30
  centres);
- `save_txt`: one MOTChallenge file per sequence, `labels/<video stem>.txt` (images: `<image stem>.txt` for a
  single image, else `<folder name>.txt`; a later run of images, after a video, `<its first image's stem>.txt`),
  lines `frame,id,x,y,w,h,conf,-1,-1,-1` (`data.sinks.MotSink`);
- `save_json`: each frame's entry has its `frame` number and each detection its `id`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.cfg import FrameArgs, TrackArgs
from yolonas_cli.core import console
from yolonas_cli.core.install import pip_extra, require
from yolonas_cli.data.frames import Frame
from yolonas_cli.data.plotting import default_line_width, draw_trails
from yolonas_cli.data.results import Result
from yolonas_cli.data.sinks import MotSink
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import Engine
from yolonas_cli.modes.predict import PredictOutputs, run_frames
from yolonas_cli.modes.track.config import load_tracker_config
from yolonas_cli.modes.track.session import TrackSession

__all__ = ["TrackOutputs", "new_session", "run", "track_stream"]


def run(args: TrackArgs) -> int:
    """`yolo-nas track`: the tracker YAML is checked first (a mistake is one line, before the model loads), then
    the whole source is tracked; outputs are written as the results stream by."""
    session = new_session(args)
    for _ in track_stream(Detector(args.model, weights_dir=args.weights_dir), args, session):
        pass
    return 0


def new_session(args: TrackArgs) -> TrackSession:
    """A fresh tracking session for `args` (UsageError for a bad tracker YAML; MissingExtraError without scipy)."""
    config = load_tracker_config(args.tracker)
    require("scipy.optimize", "tracking", pip_extra("track"))
    return TrackSession(config, persist=args.persist, vid_stride=args.vid_stride)


def track_stream(model: Detector, args: TrackArgs, session: TrackSession) -> Iterator[Result]:
    """Track over `args.source` with `session`, saving, showing and printing as `args` says; yields one tracked
    Result per image or frame (see `session.TrackSession.track`)."""
    handler = partial(_outputs, session=session)
    return console.each_step_with_verbosity(run_frames(model, args, handler), args.verbose)


def _outputs(args: FrameArgs, engine: Engine, session: TrackSession) -> PredictOutputs:
    return TrackOutputs(args, engine, session)


class TrackOutputs(PredictOutputs):
    """Predict's outputs of tracked results: ids in the labels, trails, MOTChallenge files, frames in the JSON."""

    def __init__(self, args: FrameArgs, engine: Engine, session: TrackSession):
        super().__init__(args, engine)
        self.session = session
        self.mot: dict[Hashable, MotSink] = {}

    def handle(self, frame: Frame, result: Result) -> Result:
        """Track the frame's detections, then print, save and show the tracked result."""
        return super().handle(frame, self.session.track(frame, result))

    def _annotated(self, result: Result) -> np.ndarray:
        image = super()._annotated(result)
        if not self.args.show_boxes:
            return image
        width = self.args.line_width or default_line_width(image.shape)
        ids = result.boxes.numpy().id
        current = ids.tolist() if ids is not None else []  # a tracked result always has ids, possibly none
        return draw_trails(image, self.session.trails.points(current), width)

    def _save_labels(self, frame: Frame, result: Result, named: str) -> None:
        """`save_txt`: the frame's tracks appended to its sequence's MOTChallenge file."""
        assert self.run_dir is not None
        sink = self.mot.get(self.session.sequence)
        if sink is None:
            sink = MotSink(self.run_dir / "labels" / f"{self._sequence_stem(frame)}.txt")
            self.mot[self.session.sequence] = sink
        sink.add(self.session.frame_number, result)

    def _sequence_stem(self, frame: Frame) -> str:
        """The MOT file's stem: the video's or stream's, a single image's, or the folder of the images (for a
        later run of images, after a video of the same source, its first image's)."""
        later_images = any(isinstance(key, tuple) and key[0] == "images" for key in self.mot)
        if frame.kind != "image" or frame.total == 1 or later_images:
            return self._stem(frame.path)
        if frame.in_memory:
            return self._stem("images")
        return self._stem(str(Path(frame.path).parent))

    def _json_extra(self) -> dict[str, Any] | None:
        return {"frame": self.session.frame_number}

    def close(self, failed: bool = False) -> None:
        """Finish (or, for a failed run, discard) the MOTChallenge files, then predict's outputs."""
        for sink in self.mot.values():
            sink.abort() if failed else sink.close()
        self.mot.clear()
        super().close(failed)

    def speed_lines(self) -> list[str]:
        timing = self.session.timing
        return [f"Track: {timing.per_frame:.1f}ms per frame ({self.session.describe()}, over {timing.frames} frames)"]

    def labels_line(self) -> str:
        assert self.run_dir is not None
        return f"MOTChallenge tracks saved to {self.run_dir / 'labels'}"
