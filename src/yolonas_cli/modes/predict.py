"""`yolo-nas predict`: the engine's results streamed through the output sinks (annotated images and videos,
video frames, labels, crops, predictions.json), an optional window, and the console lines. `NAS.predict` runs
the same `predict_stream`.

The run folder is `runs/detect/predict` (`predict2`, ... when it exists; see `data.sinks.make_run_dir`),
claimed only when something is saved. Console (verbose only): the header line, one line per image or frame,
the speed and where the results went.

`run_frames` is the loop itself, with the per-frame handler as a parameter: `PredictOutputs` here, the
tracking mode's `TrackOutputs` (which tracks each result before saving it) in `modes.track.mode`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from yolonas_cli.cfg import FrameArgs, PredictArgs, defaults, make_args, slice_config
from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError, one_line
from yolonas_cli.core.files import atomic_imwrite
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.data.display import close_windows, display_problem, show_image
from yolonas_cli.data.frames import Frame
from yolonas_cli.data.results import Result
from yolonas_cli.data.sinks import JsonSink, VideoSink, make_run_dir, warn_unsaved
from yolonas_cli.data.sources import Source, default_source, open_source
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.modes.header import print_header, warn_fixed_size

T = TypeVar("T")

IMAGE_SHOW_MS = 300  # how long `show=True` shows each still image (videos and streams: 1 ms per frame)


def engine_settings(args: FrameArgs) -> EngineSettings:
    """The engine settings a predict run asks for."""
    size = imgsz_pair(args.imgsz)
    return EngineSettings(
        imgsz=size,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        classes=tuple(args.classes) if args.classes is not None else None,
        agnostic_nms=args.agnostic_nms,
        rect=args.rect,
        batch=args.batch,
        slicing=slice_config(args),
    )


def predict_stream(model: Detector, args: PredictArgs) -> Iterator[Result]:
    """Run predict over `args.source`, saving, showing and printing as `args` says; yields one Result per
    image/frame. The console follows `args.verbose` while the run works (not while the caller holds a result).
    With `args.ray`, the images are spread over Ray actors (`modes.ray_predict`)."""
    return console.each_step_with_verbosity(_predict(model, args), args.verbose)


def _predict(model: Detector, args: PredictArgs) -> Iterator[Result]:
    if args.ray is not None:
        from yolonas_cli.modes.ray_predict import ray_predict_stream

        yield from ray_predict_stream(model, args, engine_settings(args))
        return
    yield from run_frames(model, args, PredictOutputs)


def run_frames(
    model: Detector, args: FrameArgs, make_outputs: Callable[[FrameArgs, Engine], PredictOutputs]
) -> Iterator[Result]:
    """The predict loop over `args.source`: the engine's results, each given to the handler that
    `make_outputs(args, engine)` returns (made after the header, so that a failing start leaves no run folder),
    which saves and shows it and returns the result to yield; then the summary."""
    source = _open(args)
    engine = model.make_engine(engine_settings(args), args.device, args.half, runtime=args.backend)
    print_header(model, engine)
    warn_fixed_size(engine, args.imgsz, defaults(args.mode)["imgsz"])
    run = make_outputs(args, engine)
    seen = 0
    started = time.perf_counter()
    try:
        with console.count_progress(args.mode, source.frame_total()) as advance:
            for frame, result in engine.stream(source, keep_images=True):
                result = run.handle(frame, result)
                seen += 1
                advance()
                yield result
                if run.stopped:
                    console.info(f"stopped from the window after {seen} images")
                    break
    except GeneratorExit:  # the caller stopped iterating early: keep what was saved
        run.close()
        raise
    except KeyboardInterrupt:
        run.close()
        console.warn(f"interrupted after {seen} images; the files saved so far are complete")
        raise
    except BaseException:
        run.close(failed=True)
        raise
    run.close()
    _print_summary(engine, run, seen, time.perf_counter() - started)
    run.report_failures(seen)


def _open(args: FrameArgs) -> Source:
    if args.source is None:
        folder = default_source()
        console.info(f"source not given: using the bundled sample photos in {folder}")
        return open_source(folder)
    return open_source(args.source, vid_stride=args.vid_stride, stream_buffer=args.stream_buffer)


class PredictOutputs:
    """The sinks and the window of one predict run. The run folder is claimed only when something is saved.

    An output that cannot be made for one image (OpenCV cannot encode or draw it, e.g. a 1x100000 image as
    JPEG) is a warning naming the image, and the run goes on: the other outputs of that image and every
    other image are still saved, and `report_failures` says at the end how many failed. A failure of the
    disk itself (OSError: full, read-only, no permission) still ends the run."""

    def __init__(self, args: FrameArgs, engine: Engine):
        self.args = args
        self.engine = engine
        saving = args.save or args.save_txt or args.save_crop or args.save_json or args.save_frames
        self.run_dir: Path | None = (
            make_run_dir(args.project, args.name, args.exist_ok, args.mode, create=True) if saving else None
        )
        self.json = JsonSink(self.run_dir) if args.save_json and self.run_dir else None
        self.videos: dict[str, VideoSink] = {}
        self.stems: dict[str, str] = {}
        self.labels_written = 0
        self.failed: dict[str, int] = {}  # input path -> outputs that could not be made for it
        self.show = args.show and _can_show()
        self.stopped = False  # q or Esc was pressed in the window

    def handle(self, frame: Frame, result: Result) -> Result:
        """Print the image's line, write its outputs and show it; returns the result to hand to the caller."""
        console.info(f"{frame.prefix}{self._shape_text(result)} {result.verbose()}{result.speed['inference']:.1f}ms")
        annotated = None
        if self.show or self._saves_pictures(frame):
            annotated = self._guarded(frame, "the annotated image", lambda: self._annotated(result))
        if self.run_dir is not None:
            result.save_dir = str(self.run_dir)
            self._save(frame, result, annotated)
        if self.show and annotated is not None:
            wait = IMAGE_SHOW_MS if frame.kind == "image" else 1
            self.stopped = not show_image(frame.path, annotated, wait)
        return result

    def _shape_text(self, result: Result) -> str:
        """The network input "640x640", with the tile count when slicing: "640x640 (12 tiles)"."""
        h, w = result.input_shape or result.orig_shape
        if self.engine.settings.slicing is None:
            return f"{h}x{w}"
        tiles = self.engine.tile_count(result.orig_shape)
        return f"{h}x{w} ({tiles} tile{'s' if tiles > 1 else ''})"

    def _saves_pictures(self, frame: Frame) -> bool:
        return self.run_dir is not None and (self.args.save or (self.args.save_frames and frame.kind != "image"))

    def _annotated(self, result: Result) -> np.ndarray:
        a = self.args
        return result.plot(conf=a.show_conf, line_width=a.line_width, labels=a.show_labels, boxes=a.show_boxes)

    def _save(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        run_dir = self.run_dir
        assert run_dir is not None
        stem = self._stem(frame.path)
        named = f"{stem}_{frame.frame}" if frame.kind != "image" else stem
        picture = annotated
        if picture is not None and self._saves_pictures(frame):
            self._guarded(frame, "the annotated image", lambda: self._save_pictures(frame, picture, stem))
        if self.args.save_txt:
            self._save_labels(frame, result, named)
        if self.args.save_crop:
            self._guarded(frame, "the crops", lambda: result.save_crop(run_dir / "crops", f"{named}.jpg"))
        if self.json is not None:
            self.json.add(result, self._json_extra())

    def _json_extra(self) -> dict[str, Any] | None:
        """Keys added to the image's predictions.json entry (none here)."""
        return None

    def _save_labels(self, frame: Frame, result: Result, named: str) -> None:
        """`save_txt`: the YOLO label file of the image or frame."""
        assert self.run_dir is not None
        if result.save_txt(self.run_dir / "labels" / f"{named}.txt", self.args.save_conf):
            self.labels_written += 1

    def _guarded(self, frame: Frame, what: str, make: Callable[[], T]) -> T | None:
        """Run `make`; an image-specific failure (YoloNasError, cv2.error) becomes a warning, once per input,
        and None."""
        import cv2

        try:
            return make()
        except (YoloNasError, cv2.error) as exc:
            first = frame.path not in self.failed
            self.failed[frame.path] = self.failed.get(frame.path, 0) + 1
            if first:
                where = f" (frame {frame.frame})" if frame.frame is not None else ""
                console.warn(f"could not save {what} of '{frame.path}'{where}: {one_line(str(exc))}; going on")
            return None

    def report_failures(self, seen: int) -> None:
        """The closing warning: how many inputs had outputs that could not be saved."""
        warn_unsaved(len(self.failed), seen, "images or frames")

    def _save_pictures(self, frame: Frame, annotated: np.ndarray, stem: str) -> None:
        """The annotated image, or the video frame (`save`) and its own JPEG (`save_frames`)."""
        assert self.run_dir is not None
        if frame.kind == "image":
            atomic_imwrite(self.run_dir / f"{stem}.jpg", annotated)
            return
        if self.args.save_frames:
            atomic_imwrite(self.run_dir / f"{stem}_frames" / f"{stem}_{frame.frame}.jpg", annotated)
        if self.args.save:
            sink = self.videos.get(frame.path)
            if sink is None:
                sink = self.videos[frame.path] = VideoSink(self.run_dir, stem, frame.fps, self.args.vid_stride)
            sink.write(annotated)

    def _stem(self, path: str) -> str:
        """A file stem per input, unique within the run (a second 'a' becomes 'a-2')."""
        if path not in self.stems:
            base = Path(path).stem or "stream"
            taken = set(self.stems.values())
            stem, n = base, 1
            while stem in taken:
                n += 1
                stem = f"{base}-{n}"
            self.stems[path] = stem
        return self.stems[path]

    def close(self, failed: bool = False) -> None:
        """Finish videos and predictions.json (complete files only; a failed run discards open videos) and
        close the windows."""
        for sink in self.videos.values():
            sink.abort() if failed else sink.close()
        self.videos.clear()
        if self.json is not None:
            self.json.abort() if failed else self.json.close()
        if self.show:
            close_windows()

    def speed_lines(self) -> list[str]:
        """Lines printed after the engine's speed line (none here)."""
        return []

    def labels_line(self) -> str:
        """What `save_txt` saved, printed after the run folder."""
        assert self.run_dir is not None
        return f"{self.labels_written} labels saved to {self.run_dir / 'labels'}"


def _can_show() -> bool:
    """True when a window can be opened here; otherwise one warning says why (the run goes on)."""
    problem = display_problem()
    if problem is not None:
        console.warn(f"show=True: cannot open a window: {problem}; nothing is shown (saving is not affected)")
    return problem is None


def _print_summary(engine: Engine, run: PredictOutputs, seen: int, seconds: float) -> None:
    speed = engine.timer.per_image()
    shape = engine.timer.last_shape
    if shape is not None:
        sliced = engine.settings.slicing is not None
        shape = shape if sliced else (min(engine.settings.batch, seen), *shape[1:])
        console.info(
            f"Speed: {speed['preprocess']:.1f}ms preprocess, {speed['inference']:.1f}ms inference, "
            f"{speed['postprocess']:.1f}ms postprocess per image at shape {shape}"
            + (" (tiles; the times add up all tiles of an image)" if sliced else "")
        )
    for line in run.speed_lines():
        console.info(line)
    if run.run_dir is not None:
        console.info(f"Results saved to {run.run_dir}")
        if run.args.save_txt:
            console.info(run.labels_line())


def predict_args(model: Any, source: Any, overrides: dict[str, Any], *, cli_defaults: bool) -> PredictArgs:
    """Typed, validated predict arguments for the Python API (save defaults to False there)."""
    values = {"save": cli_defaults, **overrides, "model": str(model), "source": source}
    return cast(PredictArgs, make_args("predict", **values))


def run(args: PredictArgs) -> int:
    """`yolo-nas predict`: run predict over the whole source; outputs are written as the results stream by
    (`stream=` changes nothing here: the command line always streams)."""
    for _ in predict_stream(Detector(args.model, weights_dir=args.weights_dir), args):
        pass
    return 0
