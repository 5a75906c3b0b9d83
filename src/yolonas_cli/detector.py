"""A YOLO-NAS detector opened from weights (run by PyTorch, or converted once for a faster runtime with
`runtime="auto"`, see `formats.auto`) or from an exported file (run by its format's runtime), behind one
`Backend`: what every mode runs.

    model = Detector("yolo_nas_s.pt")                 # or "yolo_nas_s.onnx", "yolo_nas_s_openvino_model/", ...
    engine = model.make_engine(EngineSettings(imgsz=(640, 640)), device="cpu")                  # PyTorch
    engine = model.make_engine(EngineSettings(imgsz=(640, 640)), device="cpu", runtime="auto")  # predict's default

The public facade `yolonas_cli.NAS` (api.py) is a Detector with the modes (predict, val, export, info) as
methods; the modes themselves take a Detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from yolonas_cli.core import console
from yolonas_cli.core.devices import resolve_half, select_device
from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine.backend import Backend
from yolonas_cli.engine.engine import PREDICT, Engine, EngineSettings, Pipeline
from yolonas_cli.formats.auto import Conversion, open_converted, runtime_for
from yolonas_cli.formats.exported import open_exported, read_exported_metadata
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.registry import is_exported
from yolonas_cli.model.blocks import reparameterize_model
from yolonas_cli.weights.download import sha256_file
from yolonas_cli.weights.loader import LoadedWeights, load_weights
from yolonas_cli.weights.resolve import cache_dir


class Detector:
    """A YOLO-NAS detector loaded from a weights file or name, or opened from an exported file.

    Attributes: `model` (the torch.nn.Module, eval mode; weights only), `names` ({class id: name}), `variant`
    ('yolo_nas_s', ... or None for a custom architecture), `path` (the weights or exported file).
    """

    def __init__(self, model: str | Path = "yolo_nas_s.pt", *, weights_dir: str | Path | None = None):
        self.fused = False
        self.header_shown = False  # a mode printed this model's header line already (once per Detector)
        self.weights_dir = weights_dir
        self._profiles: dict[tuple[int, int], tuple[int, int]] = {}
        self._backends: dict[tuple[str, ...], Backend | None] = {}  # opened runtimes (None: a conversion failed)
        self._sha256: str | None = None
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

    def fuse(self) -> Detector:
        """Fuse every re-parameterisable block in place (QARepVGG branches, Conv-BN pairs). Returns self.

        An exported model is already fused: nothing to do."""
        if self._loaded is not None:
            reparameterize_model(self._loaded.model.eval())
        self.fused = True
        self._profiles.clear()
        return self

    def profile(self, imgsz: tuple[int, int]) -> tuple[int, int]:
        """(parameters, FLOPs) of the model as it runs (fused once a mode has run it) at `imgsz` (h, w); counted
        once per size. Weights only."""
        if imgsz not in self._profiles:
            from yolonas_cli.model.profile import count_flops, count_parameters

            self._profiles[imgsz] = (count_parameters(self.model), count_flops(self.model, *imgsz))
        return self._profiles[imgsz]

    def backend(
        self, device: str | int | torch.device | None = "auto", half: bool = False, runtime: str = "torch"
    ) -> Backend:
        """The runtime on `device`: for weights, the fused model in PyTorch (fusing it first, as every mode does)
        or, with `runtime` auto, openvino or onnxruntime, the weights converted once for that runtime (see
        `formats.auto`; a failed conversion falls back to PyTorch with one warning); for an exported file, its
        format's runtime (`runtime` is not used). Runtimes other than PyTorch are opened once per device."""
        target = device if isinstance(device, torch.device) else select_device(device)
        if self._exported_path is not None:
            key = (str(target), str(half))
            if key not in self._backends:
                self._backends[key] = open_exported(self._exported_path, target, half)
            return cast(Backend, self._backends[key])
        if not self.fused:
            self.fuse()
        half = resolve_half(half, target)  # FP16 only on a GPU, where the weights run in PyTorch
        converted = None if half else self._converted(runtime_for(runtime, target), target)
        return converted or self._torch_backend(target, half)

    def _torch_backend(self, target: torch.device, half: bool) -> Backend:
        from yolonas_cli.formats.pytorch import TorchBackend

        return TorchBackend(self.model, target, half)

    def _converted(self, runtime: str | None, target: torch.device) -> Backend | None:
        """The weights converted for `runtime` (None: PyTorch), opened once; None after a failure, which is
        warned about once."""
        if runtime is None:
            return None
        key = ("converted", runtime, str(target))
        if key not in self._backends:
            conversion = Conversion(self.loaded.model, self.path, self.sha256, self.names, self.variant)
            try:
                self._backends[key] = open_converted(conversion, runtime, target, cache_dir(self.weights_dir))
            except Exception as exc:  # whatever failed, PyTorch runs the weights as before
                console.warn(
                    f"running {self.path.name} in PyTorch: converting it for {runtime} failed "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
                )
                self._backends[key] = None
        return self._backends[key]

    @property
    def sha256(self) -> str:
        """The sha256 of the weights or exported file (computed once)."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path) if self.path.is_file() else ""
        return self._sha256

    def make_engine(
        self,
        settings: EngineSettings,
        device: str | int | torch.device | None = "auto",
        half: bool = False,
        pipeline: Pipeline = PREDICT,
        runtime: str = "torch",
    ) -> Engine:
        """The shared inference engine on `device` (see `backend`)."""
        return Engine(self.backend(device, half, runtime), self.names, settings, pipeline)

    def __repr__(self) -> str:
        kind = "exported" if self.is_exported else f"fused={self.fused}"
        return f"{type(self).__name__}({str(self.path)!r}, variant={self.variant!r}, classes={len(self.names)}, {kind})"
