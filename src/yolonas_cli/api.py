"""The Python API: `NAS("yolo_nas_s.pt")`, the same engine and modes as the CLI.

from yolonas_cli import NAS
model = NAS("yolo_nas_s.pt")          # a path or a weights.lock name; downloads once, verified
results = model("photo.jpg")          # list of Result, one per image or frame
model.info()                          # what `yolo-nas info` shows

`NAS` is a `Detector` (weights run by PyTorch, or an exported file run by its format's runtime) with the
modes as methods: `predict` (and calling the model), `track`, `val`, `export`, `info`, `train`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from yolonas_cli.cfg import ExportArgs, TrackArgs, TrainArgs, ValArgs, make_args
from yolonas_cli.core.errors import UsageError
from yolonas_cli.data.results import Result
from yolonas_cli.detector import Detector
from yolonas_cli.metrics.val_metrics import ValMetrics
from yolonas_cli.modes import export, info, predict, val
from yolonas_cli.modes.track import mode as track_mode
from yolonas_cli.modes.track.config import load_tracker_config
from yolonas_cli.modes.track.session import TrackSession
from yolonas_cli.weights.loader import load_weights


class NAS(Detector):
    """A YOLO-NAS detector loaded from a weights file or name (or an exported file), with the modes.

    Attributes: `model` (the torch.nn.Module, eval mode), `names` ({class id: name}), `variant`
    ('yolo_nas_s', ... or None for a custom architecture), `path` (the weights file).
    """

    _track_session: TrackSession | None = None  # the tracker of the last track() call (kept for persist=True)

    def predict(self, source: Any = None, *, stream: bool = False, **kwargs: Any) -> list[Result] | Iterator[Result]:
        """Detect objects in `source` (path, folder, glob, URL, video, webcam index, numpy BGR array, PIL
        image, or a list of these; None = the bundled sample photos). Keyword arguments are the CLI's
        predict arguments (conf, iou, imgsz, classes, save, save_txt, ...; save defaults to False here).

        Returns a list of Result (one per image or frame), or a generator of them with `stream=True`.
        `verbose=False` prints nothing (errors are raised, not printed).
        """
        args = predict.predict_args(self.path, source, {**kwargs, "stream": stream}, cli_defaults=False)
        results = predict.predict_stream(self, args)
        return results if stream else list(results)

    def __call__(self, source: Any = None, *, stream: bool = False, **kwargs: Any) -> list[Result] | Iterator[Result]:
        """Same as `predict`."""
        return self.predict(source, stream=stream, **kwargs)

    def track(
        self, source: Any = None, *, stream: bool = False, persist: bool = False, **kwargs: Any
    ) -> list[Result] | Iterator[Result]:
        """Detect and track objects in `source` (as `predict`; a video, stream, folder of frames, or one frame per
        call with `persist=True`). Keyword arguments are the CLI's track arguments (predict's, `conf` 0.1 by
        default, `tracker="bytetrack.yaml"` or "botsort.yaml" or a path; save defaults to False here).

        `persist=True` keeps the tracker of the previous call (same tracker YAML), so ids continue across calls:
        `model.track(frame, persist=True)` in a loop over video frames. Returns a list of Result (one per image
        or frame) whose `boxes.id` are the track ids (`boxes.is_track` True), or a generator with `stream=True`.
        """
        values = {"save": False, **kwargs, "model": str(self.path), "source": source}
        args = cast(TrackArgs, make_args("track", **{**values, "stream": stream, "persist": persist}))
        session = self._track_session
        if persist and session is not None and session.config == load_tracker_config(args.tracker):
            session.persist = True
        else:
            session = self._track_session = track_mode.new_session(args)
        results = track_mode.track_stream(self, args, session)
        return results if stream else list(results)

    def val(self, **kwargs: Any) -> ValMetrics:
        """Validate on a dataset (`data="coco8.yaml"`, ...; the CLI's val arguments). Returns metrics with
        `box.map`, `box.map50`, `box.map75`, `box.maps`, `speed` and `results_dict`."""
        args = cast(ValArgs, make_args("val", **{**kwargs, "model": str(self.path)}))
        return val.validate(self, args)

    def export(self, **kwargs: Any) -> Path:
        """Export to ONNX, TorchScript, OpenVINO or TensorRT (`format="onnx"`, `dynamic=True`, `nms=True`, ...:
        the CLI's export arguments). Returns the path written, next to the weights."""
        args = cast(ExportArgs, make_args("export", **{**kwargs, "model": str(self.path)}))
        return export.export_model(self, args)

    def info(self, imgsz: int | tuple[int, int] = 640, verbose: bool = True) -> dict[str, Any]:
        """Print (when verbose) and return the model facts `yolo-nas info` shows."""
        return info.info(self, imgsz, verbose)

    def train(self, **kwargs: Any) -> ValMetrics | None:
        """Train from this model's weights (`data="my.yaml"`, `epochs=10`, ...: the CLI's train arguments;
        `pretrained=False` keeps only its architecture). Returns the final validation metrics of best.pt (None
        without a val split, or after a multi-GPU run); the model is then best.pt, ready to predict, val or
        export. Raises TrainingInterrupted (a YoloNasError) when stopped by Ctrl-C or SIGTERM, after saving."""
        from yolonas_cli.modes import train as train_mode

        if self.is_exported:
            raise UsageError(f"'{self.path}' is an exported model: train from the weights file (.pt/.pth)")
        args = cast(TrainArgs, make_args("train", **{"model": str(self.path), **kwargs}))
        result = train_mode.train(args)
        self._loaded, self.fused = load_weights(result.best), False
        return result.metrics
