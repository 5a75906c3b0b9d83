"""Exported models as backends: which backend opens which file, their metadata, and engines for them.

    exported = open_exported("yolo_nas_s.onnx", device="cpu")
    engine = exported.make_engine(EngineSettings(imgsz=exported.imgsz))

One backend per file in this package, imported only when a file of its kind is opened:

| path                              | backend                                  | needs              |
|-----------------------------------|------------------------------------------|--------------------|
| `*.onnx`                          | `onnxruntime_backend.OnnxRuntimeBackend` | onnxruntime        |
| `*.torchscript`                   | `torchscript_backend.TorchScriptBackend` | (torch)            |
| `*_openvino_model/` or `*.xml`    | `openvino_backend.OpenVinoBackend`       | openvino           |
| `*.engine`                        | `tensorrt_backend.TensorRTBackend`       | tensorrt, CUDA     |

Every backend reads the `ExportMetadata` from the file and exposes `metadata`, `fixed_input` ((H, W) of a
static export, else None) and `end2end` (the graph ends with NMS). A decoded backend returns
`(boxes [B,N,4], scores [B,N,C])` like the torch one; an end-to-end backend returns one float32
`Tensor[K,6]` (x1, y1, x2, y2, conf, class; input pixels) per image, which `End2EndEngine` turns into
results without running NMS again.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, WeightsError
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.formats.metadata import ExportMetadata

BACKENDS: dict[str, str] = {
    "onnx": "onnx:OnnxRuntimeBackend",
    "torchscript": "torchscript:TorchScriptBackend",
    "openvino": "openvino:OpenVinoBackend",
    "engine": "tensorrt:TensorRTBackend",
}
_SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript", ".engine": "engine", ".xml": "openvino"}
OPENVINO_DIR_SUFFIX = "_openvino_model"


def exported_kind(path: str | Path) -> str | None:
    """'onnx', 'torchscript', 'openvino' or 'engine' for an exported model's path, else None (by name only)."""
    path = Path(path)
    if path.name.endswith(OPENVINO_DIR_SUFFIX) or (path.is_dir() and any(path.glob("*.xml"))):
        return "openvino"
    return _SUFFIXES.get(path.suffix.lower())


def is_exported(path: str | Path) -> bool:
    """True when `path` names an exported model (ONNX, TorchScript, OpenVINO folder or XML, TensorRT engine)."""
    return exported_kind(path) is not None


@dataclass
class ExportedModel:
    """An exported model opened for inference: `names` and `make_engine` as on a NAS."""

    backend: Any  # a Backend (see backends.base), plus `metadata` and `end2end`
    names: dict[int, str]
    imgsz: tuple[int, int]  # the export size: the only size of a static model, the default of a dynamic one
    metadata: ExportMetadata
    path: Path

    @property
    def end2end(self) -> bool:
        return self.metadata.nms

    def make_engine(self, settings: EngineSettings, device: Any = None, half: bool = False) -> Engine:
        """The inference engine for this model (NMS is not run again when the graph already has it).

        `device` and `half` are accepted so that an ExportedModel can stand where the predictor and the
        validator expect a NAS; the device was chosen by `open_exported` and the precision at export."""
        if self.end2end:
            return End2EndEngine(self.backend, self.names, settings)
        return Engine(self.backend, self.names, settings)


def open_exported(
    path: str | Path, device: str | int | torch.device | None = "auto", half: bool = False
) -> ExportedModel:
    """Open an exported model with its backend; the names, size and settings come from the file itself."""
    path = Path(path)
    kind = exported_kind(path)
    if kind is None:
        raise UsageError(
            f"'{path}' is not an exported model (expected .onnx, .torchscript, .engine or an "
            f"OpenVINO folder *{OPENVINO_DIR_SUFFIX}/)"
        )
    if not path.exists():
        raise WeightsError(f"'{path}' does not exist")
    if half:
        console.warn(f"half=True does not change an exported model: its precision was fixed at export ({path.name})")
    module_name, _, class_name = BACKENDS[kind].partition(":")
    backend_class = getattr(importlib.import_module(f"yolonas_cli.formats.{module_name}"), class_name)
    backend = backend_class(path, _device(device))
    meta: ExportMetadata = backend.metadata
    return ExportedModel(backend, dict(meta.names), meta.imgsz, meta, path)


def read_exported_metadata(path: str | Path) -> ExportMetadata:
    """The metadata of an exported model without building a runtime session (cheap: for `NAS("x.onnx")`
    to know its names and size before a device is chosen). TensorRT and TorchScript need no extra package."""
    path = Path(path)
    kind = exported_kind(path)
    if kind is None or not path.exists():
        raise WeightsError(f"'{path}' is not an exported model file or folder")
    if kind == "engine":
        from yolonas_cli.formats.tensorrt_export import read_engine_header

        return read_engine_header(path)
    if kind == "torchscript":
        return _torchscript_metadata(path)
    if kind == "openvino":
        from yolonas_cli.formats.openvino import find_xml, load_openvino
        from yolonas_cli.formats.openvino_export import read_rt_info

        return read_rt_info(load_openvino().Core().read_model(str(find_xml(path))), str(path))
    return _onnx_metadata(path)


def _torchscript_metadata(path: Path) -> ExportMetadata:
    """The `extra/metadata.json` entry of the TorchScript zip archive."""
    import zipfile

    from yolonas_cli.formats.metadata import metadata_from_json
    from yolonas_cli.formats.torchscript_export import METADATA_FILE

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)
            if name is None:
                raise WeightsError(f"'{path}' was not exported by yolo-nas (no {METADATA_FILE} in it)")
            return metadata_from_json(archive.read(name), str(path))
    except zipfile.BadZipFile:
        raise WeightsError(f"'{path}' is not a TorchScript file") from None


def _onnx_metadata(path: Path) -> ExportMetadata:
    """ONNX metadata_props through onnx when installed, else through an ONNX Runtime CPU session."""
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        from yolonas_cli.formats.onnx_graph import read_metadata

        return read_metadata(path)
    from yolonas_cli.formats.onnx import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, torch.device("cpu")).metadata


def _device(device: str | int | torch.device | None) -> torch.device:
    from yolonas_cli.core.devices import select_device

    return device if isinstance(device, torch.device) else select_device(device)


# ---------------------------------------------------------------- helpers for backends


def run_in_batches(
    run: Callable[[np.ndarray], Sequence[np.ndarray]], images: np.ndarray, batch: int | None
) -> list[np.ndarray]:
    """Run a fixed-batch model on any number of images: chunks of `batch`, the last one padded with zeros;
    outputs (batch-first arrays) concatenated back to len(images). `batch=None`: one call."""
    if batch is None or len(images) == batch:
        return [np.asarray(o) for o in run(images)]
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        count = len(chunk)
        if count < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - count, *chunk.shape[1:]), chunk.dtype)])
        parts.append([np.asarray(o)[:count] for o in run(np.ascontiguousarray(chunk))])
    return [np.concatenate(outputs) for outputs in zip(*parts)]


def check_input(images: np.ndarray, fixed: tuple[int, int] | None, where: str) -> None:
    """UsageError when a static model gets another image size."""
    if fixed is not None and tuple(images.shape[2:]) != tuple(fixed):
        raise UsageError(
            f"{where} was exported for {fixed[0]}x{fixed[1]} inputs, got "
            f"{images.shape[2]}x{images.shape[3]}: export with dynamic=True for other sizes"
        )


def outputs_to_raw(outputs: Sequence[np.ndarray], end2end: bool) -> Any:
    """Backend outputs -> what the engine expects: (boxes, scores) tensors, or per-image detections."""
    from yolonas_cli.formats.wrappers import detections_from_end2end

    tensors = [torch.from_numpy(np.ascontiguousarray(o)) for o in outputs]
    if end2end:
        return detections_from_end2end(*tensors)
    return tensors[0].float(), tensors[1].float()


# ---------------------------------------------------------------- engine


class End2EndEngine(Engine):
    """The engine for graphs with NMS inside: postprocessing only filters and maps boxes back.

    The graph's conf, iou and max_det were fixed at export. A higher `conf`, a lower `max_det` and `classes`
    are applied here; settings the graph cannot honour (lower conf, another iou, agnostic NMS) are warned
    about once and the graph's values are used.
    """

    def __init__(self, backend: Any, names: dict[int, str], settings: EngineSettings):
        super().__init__(backend, names, settings)
        self._warn_unhonoured(backend.metadata)

    def _warn_unhonoured(self, meta: ExportMetadata) -> None:
        s, problems = self.settings, []
        if meta.conf is not None and s.conf < meta.conf:
            problems.append(f"conf={s.conf:g} (the model keeps score > {meta.conf:g})")
        if meta.iou is not None and abs(s.iou - meta.iou) > 1e-9:
            problems.append(f"iou={s.iou:g} (the model uses {meta.iou:g})")
        if s.agnostic_nms:
            problems.append("agnostic_nms=True (the model's NMS is class-aware)")
        if problems:
            console.warn(f"this model has NMS inside, exported with fixed settings: ignoring {', '.join(problems)}")

    def postprocess(self, raw: Any, letterboxes: Sequence[Letterbox]) -> list[np.ndarray]:
        """Per image [K,6] in original pixels (clipped), after the stricter conf/classes/max_det filters."""
        s = self.settings
        out = []
        for det, lb in zip(raw, letterboxes):
            keep = det[:, 4] > s.conf
            if s.classes is not None:
                keep &= torch.isin(det[:, 5], torch.tensor(s.classes, dtype=det.dtype))
            det = det[keep][: s.max_det]
            out.append(np.asarray(lb.to_original(det.cpu().numpy()), dtype=np.float32))
        return out
