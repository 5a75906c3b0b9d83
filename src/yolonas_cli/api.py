"""The Python API: `NAS("yolo_nas_s.pt")`, the same engine as the CLI.

from yolonas_cli import NAS
model = NAS("yolo_nas_s.pt")          # a path or a weights.lock name; downloads once, verified
results = model("photo.jpg")          # list of Result, one per image or frame
model.info()                          # what `yolo-nas info` shows
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torch import nn

from yolonas_cli.core.errors import UsageError
from yolonas_cli.data.results import Result
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.model.blocks import reparameterize_model
from yolonas_cli.weights.loader import LoadedWeights, load_weights

if TYPE_CHECKING:
    from yolonas_cli.cfg import ExportArgs
    from yolonas_cli.formats.metadata import ExportMetadata
    from yolonas_cli.metrics.coco import ValMetrics


class NAS:
    """A YOLO-NAS detector loaded from a weights file or name.

    Attributes: `model` (the torch.nn.Module, eval mode), `names` ({class id: name}), `variant`
    ('yolo_nas_s', ... or None for a custom architecture), `path` (the weights file).
    """

    def __init__(self, model: str | Path = "yolo_nas_s.pt", *, weights_dir: str | Path | None = None):
        from yolonas_cli.formats.registry import is_exported, read_exported_metadata

        self.fused = False
        self._exported_backends: dict[tuple[str, bool], Any] = {}
        self._exported: ExportMetadata | None = None
        self._exported_path: Path | None = None
        self._loaded: LoadedWeights | None = None
        if is_exported(model) and Path(model).exists():
            self._exported_path, self._exported = Path(model), read_exported_metadata(model)
        else:
            self._loaded = load_weights(model, weights_dir)

    @property
    def is_exported(self) -> bool:
        """True for an exported model (ONNX, TorchScript, OpenVINO, TensorRT): no torch module behind it."""
        return self._exported is not None

    @property
    def exported_metadata(self) -> ExportMetadata | None:
        """The metadata an exported model carries (format, precision, imgsz, ...); None for weights."""
        return self._exported

    @property
    def model(self) -> nn.Module:
        """The torch.nn.Module (eval mode). Not available for an exported model."""
        return self.loaded.model

    @property
    def names(self) -> dict[int, str]:
        return dict(self._exported.names) if self._exported is not None else self.loaded.names

    @property
    def variant(self) -> str | None:
        return self._exported.model if self._exported is not None else self.loaded.variant

    @property
    def path(self) -> Path:
        return self._exported_path if self._exported_path is not None else self.loaded.path

    @property
    def loaded(self) -> LoadedWeights:
        """The model with its metadata (file format, processing settings, checkpoint facts)."""
        if self._loaded is None:
            raise UsageError(f"'{self.path}' is an exported model: load the weights file (.pt/.pth) for this")
        return self._loaded

    def fuse(self) -> NAS:
        """Fuse every re-parameterisable block in place (QARepVGG branches, Conv-BN pairs). Returns self.

        An exported model is already fused: nothing to do."""
        if self._loaded is not None:
            reparameterize_model(self._loaded.model.eval())
        self.fused = True
        return self

    def make_engine(self, settings: EngineSettings, device: str | int | None = "auto", half: bool = False) -> Engine:
        """The shared inference engine on `device` (fusing the model first, as every mode does)."""
        from yolonas_cli.core.devices import resolve_half, select_device
        from yolonas_cli.formats.pytorch import TorchBackend

        target = select_device(device)
        if self._exported_path is not None:
            return self._exported_backend(target, half).make_engine(settings)
        if not self.fused:
            self.fuse()
        return Engine(TorchBackend(self.model, target, resolve_half(half, target)), self.names, settings)

    def _exported_backend(self, device: Any, half: bool) -> Any:
        """The exported model opened on `device` (runtime sessions are kept per device)."""
        from yolonas_cli.formats.registry import open_exported

        key = (str(device), half)
        if key not in self._exported_backends:
            self._exported_backends[key] = open_exported(self.path, device, half)
        return self._exported_backends[key]

    def export(self, **kwargs: Any) -> Path:
        """Export to ONNX, TorchScript, OpenVINO or TensorRT (`format="onnx"`, `dynamic=True`, `nms=True`, ...:
        the CLI's export arguments). Returns the path written, next to the weights."""
        from yolonas_cli.cfg import make_args
        from yolonas_cli.modes.export import FORMATS, check_args, check_installed, export_model

        args = cast("ExportArgs", make_args("export", **{**kwargs, "model": str(self.path)}))
        check_args(args, FORMATS[args.format])
        check_installed(FORMATS[args.format], args)
        return export_model(self, args)

    def predict(self, source: Any = None, *, stream: bool = False, **kwargs: Any) -> list[Result] | Iterator[Result]:
        """Detect objects in `source` (path, folder, glob, URL, video, webcam index, numpy BGR array, PIL
        image, or a list of these; None = the bundled sample photos). Keyword arguments are the CLI's
        predict arguments (conf, iou, imgsz, classes, save, save_txt, ...; save defaults to False here).

        Returns a list of Result (one per image or frame), or a generator of them with `stream=True`.
        """
        from yolonas_cli.modes.predict import predict_args, predict_stream

        args = predict_args(self.path, source, kwargs, cli_defaults=False)
        results = predict_stream(self, args)
        return results if stream else list(results)

    def __call__(self, source: Any = None, *, stream: bool = False, **kwargs: Any) -> list[Result] | Iterator[Result]:
        """Same as `predict`."""
        return self.predict(source, stream=stream, **kwargs)

    def val(self, **kwargs: Any) -> ValMetrics:
        """Validate on a dataset (`data="coco8.yaml"`, ...; the CLI's val arguments). Returns metrics with
        `box.map`, `box.map50`, `box.map75`, `box.maps`, `speed` and `results_dict`."""
        from yolonas_cli.cfg import make_args
        from yolonas_cli.modes.val import validate

        return validate(self, make_args("val", **{**kwargs, "model": str(self.path)}))  # type: ignore[arg-type]

    def info(self, imgsz: int | tuple[int, int] = 640, verbose: bool = True) -> dict[str, Any]:
        """Print (when verbose) and return the model facts `yolo-nas info` shows."""
        from yolonas_cli.core import console
        from yolonas_cli.core.sizes import imgsz_pair
        from yolonas_cli.modes.info import exported_info, info_text, model_info

        size = imgsz_pair(imgsz)
        if self._exported is not None:
            facts = exported_info(self.path, self._exported)
        else:
            facts = model_info(self.loaded, size, fused=self.fused)
        if verbose:
            console.text(info_text(facts))
        return facts

    def __repr__(self) -> str:
        kind = "exported" if self.is_exported else f"fused={self.fused}"
        return f"NAS({str(self.path)!r}, variant={self.variant!r}, classes={len(self.names)}, {kind})"
