"""The Python API: `NAS("yolo_nas_s.pt")`, the same engine as the CLI.

from yolonas_cli import NAS
model = NAS("yolo_nas_s.pt")          # a path or a weights.lock name; downloads once, verified
results = model("photo.jpg")          # list of Result, one per image or frame
model.info()                          # what `yolo-nas info` shows
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from yolonas_cli.engine import Engine, EngineSettings
from yolonas_cli.loader import LoadedWeights, load_weights
from yolonas_cli.nn.blocks import reparameterize_model
from yolonas_cli.results import Result

if TYPE_CHECKING:
    from yolonas_cli.metrics import ValMetrics


class NAS:
    """A YOLO-NAS detector loaded from a weights file or name.

    Attributes: `model` (the torch.nn.Module, eval mode), `names` ({class id: name}), `variant`
    ('yolo_nas_s', ... or None for a custom architecture), `path` (the weights file).
    """

    def __init__(self, model: str | Path = "yolo_nas_s.pt", *, weights_dir: str | Path | None = None):
        self._loaded: LoadedWeights = load_weights(model, weights_dir)
        self.fused = False

    @property
    def model(self) -> nn.Module:
        return self._loaded.model

    @property
    def names(self) -> dict[int, str]:
        return self._loaded.names

    @property
    def variant(self) -> str | None:
        return self._loaded.variant

    @property
    def path(self) -> Path:
        return self._loaded.path

    @property
    def loaded(self) -> LoadedWeights:
        """The model with its metadata (file format, processing settings, checkpoint facts)."""
        return self._loaded

    def fuse(self) -> NAS:
        """Fuse every re-parameterisable block in place (QARepVGG branches, Conv-BN pairs). Returns self."""
        reparameterize_model(self._loaded.model.eval())
        self.fused = True
        return self

    def make_engine(
        self, settings: EngineSettings, device: str | int | None = "auto", half: bool = False
    ) -> Engine:
        """The shared inference engine on `device` (fusing the model first, as every mode does)."""
        from yolonas_cli.backends.torch_backend import TorchBackend
        from yolonas_cli.devices import resolve_half, select_device

        target = select_device(device)
        if not self.fused:
            self.fuse()
        return Engine(TorchBackend(self.model, target, resolve_half(half, target)), self.names, settings)

    def predict(
        self, source: Any = None, *, stream: bool = False, **kwargs: Any
    ) -> list[Result] | Iterator[Result]:
        """Detect objects in `source` (path, folder, glob, URL, video, webcam index, numpy BGR array, PIL
        image, or a list of these; None = the bundled sample photos). Keyword arguments are the CLI's
        predict arguments (conf, iou, imgsz, classes, save, save_txt, ...; save defaults to False here).

        Returns a list of Result (one per image or frame), or a generator of them with `stream=True`.
        """
        from yolonas_cli.predictor import predict_args, predict_stream

        args = predict_args(self.path, source, kwargs, cli_defaults=False)
        results = predict_stream(self, args)
        return results if stream else list(results)

    def __call__(
        self, source: Any = None, *, stream: bool = False, **kwargs: Any
    ) -> list[Result] | Iterator[Result]:
        """Same as `predict`."""
        return self.predict(source, stream=stream, **kwargs)

    def val(self, **kwargs: Any) -> ValMetrics:
        """Validate on a dataset (`data="coco8.yaml"`, ...; the CLI's val arguments). Returns metrics with
        `box.map`, `box.map50`, `box.map75`, `box.maps`, `speed` and `results_dict`."""
        from yolonas_cli.cfg import make_args
        from yolonas_cli.validator import validate

        return validate(self, make_args("val", **{**kwargs, "model": str(self.path)}))  # type: ignore[arg-type]

    def info(self, imgsz: int | tuple[int, int] = 640, verbose: bool = True) -> dict[str, Any]:
        """Print (when verbose) and return the model facts `yolo-nas info` shows."""
        from yolonas_cli import console
        from yolonas_cli.info import info_text, model_info

        size = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
        facts = model_info(self._loaded, size, fused=self.fused)  # type: ignore[arg-type]
        if verbose:
            console.text(info_text(facts))
        return facts

    def __repr__(self) -> str:
        return f"NAS({str(self.path)!r}, variant={self.variant!r}, classes={len(self.names)}, fused={self.fused})"
