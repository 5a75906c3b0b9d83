"""The Python API: `NAS("yolo_nas_s.pt")`, the same engine and modes as the CLI.

from yolonas_cli import NAS
model = NAS("yolo_nas_s.pt")          # a path or a weights.lock name; downloads once, verified
results = model("photo.jpg")          # list of Result, one per image or frame
model.info()                          # what `yolo-nas info` shows

`NAS` is a `Detector` (weights run by PyTorch, or an exported file run by its format's runtime) with the
modes as methods: `predict` (and calling the model), `val`, `export`, `info`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from yolonas_cli.cfg import ExportArgs, ValArgs, make_args
from yolonas_cli.data.results import Result
from yolonas_cli.detector import Detector
from yolonas_cli.metrics.val_metrics import ValMetrics
from yolonas_cli.modes import export, info, predict, val


class NAS(Detector):
    """A YOLO-NAS detector loaded from a weights file or name (or an exported file), with the modes.

    Attributes: `model` (the torch.nn.Module, eval mode), `names` ({class id: name}), `variant`
    ('yolo_nas_s', ... or None for a custom architecture), `path` (the weights file).
    """

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
