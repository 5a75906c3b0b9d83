"""`backend=auto`: `.pt` weights on a CPU run in the fastest runtime installed, converted once and cached.

The order is OpenVINO, then ONNX Runtime, then PyTorch (`AUTO_ORDER`; measured by `yolo-nas benchmark` on this
project's 2-core AVX-512 machine, S at 640 end to end: OpenVINO 0.78-0.81x, ONNX Runtime 0.90-1.05x the time of
PyTorch, FP32 all three, with the same detections within the export parity tolerances). On a GPU, or with
`backend=torch`, the weights run in PyTorch as before.

A conversion is the fused model exported in FP32 with dynamic batch, height and width and decoded outputs (the
graph `yolo-nas export format=... dynamic=True` writes), so that one file serves every `imgsz`, `batch` and
`rect`. It is kept in the weights cache (`cache_dir()`, or `weights_dir=`):

    <cache>/converted/<sha256 of the weights>/<format>-<runtime version>-yolonas<version>/model.onnx
    <cache>/converted/<sha256 of the weights>/<format>-<runtime version>-yolonas<version>/model_openvino_model/

keyed by the weights' content (a copy under another name is not converted again), the runtime's version and
ours (an upgrade converts again). A conversion holds a lock file, so that other processes wait for it instead
of converting too, and is written under a temporary name and renamed (`core.files`), so that a crash or a
process that could not get the lock never leaves half a model where a model is expected. A cached model whose
metadata does not match, or that does not open, is converted again once. Anything that still fails is raised
for `Detector` to fall back to PyTorch with one warning.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch

from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError
from yolonas_cli.core.locking import exclusive_lock
from yolonas_cli.core.version import __version__
from yolonas_cli.engine.backend import Backend
from yolonas_cli.formats.base import Format, pip_extra
from yolonas_cli.formats.job import ExportJob, ExportOptions
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.registry import CONVERTIBLE, get
from yolonas_cli.model.yolo_nas import YoloNAS

AUTO_ORDER = ("openvino", "onnxruntime")  # fastest first
TRACE_SIZE = (640, 640)  # the size the graph is traced at (its batch, height and width stay dynamic)
LOCK_TIMEOUT_S = 600.0  # longest wait for another process's conversion


@dataclass(frozen=True)
class Conversion:
    """What a conversion is made from: the fused model and the facts its metadata records."""

    model: YoloNAS  # fused, eval mode (copied by the export, never changed)
    weights: Path
    sha256: str
    names: dict[int, str]
    variant: str | None  # yolo_nas_s, ... or None for a custom architecture


def runtime_for(backend: str, device: torch.device) -> str | None:
    """The runtime that `backend` (auto, torch, openvino, onnxruntime) asks for on `device`, or None for
    PyTorch. auto: the first of `AUTO_ORDER` installed, on a CPU only. A runtime asked for by name must be
    installed (MissingExtraError) and OpenVINO runs on the CPU only (UsageError)."""
    if backend == "auto":
        if device.type != "cpu":
            return None
        return next((name for name in AUTO_ORDER if _format(name).runtime_installed()), None)
    if backend not in CONVERTIBLE:  # torch
        return None
    fmt = _format(backend)
    if not fmt.runtime_installed():
        hint = pip_extra(fmt.extra or fmt.name)
        raise MissingExtraError(f"backend={backend} needs {fmt.runtime}, which is not installed: {hint}")
    if backend == "openvino" and device.type != "cpu":
        raise UsageError(f"backend=openvino runs on the CPU: use device=cpu, or backend=torch for device={device}")
    return backend


def open_converted(conversion: Conversion, runtime: str, device: torch.device, cache: Path) -> Backend:
    """The backend of the weights converted for `runtime` (converting them first when the cache has no usable
    model); a cached model that does not open is converted again once."""
    fmt = _format(runtime)
    target = model_path(cache, conversion.sha256, fmt)
    fresh = ensure_converted(conversion, fmt, target)
    try:
        return fmt.open_backend(target, device)
    except Exception:
        if fresh:
            raise
    ensure_converted(conversion, fmt, target, replace=True)
    return fmt.open_backend(target, device)


def model_path(cache: Path, sha256: str, fmt: Format) -> Path:
    """Where the converted model of weights with this sha256 goes for `fmt` (see the module docstring)."""
    entry = cache / "converted" / sha256 / f"{fmt.name}-{runtime_version(fmt)}-yolonas{__version__}"
    return fmt.output_for(entry / "model.pt")


def runtime_version(fmt: Format) -> str:
    """The installed version of the runtime that runs `fmt`'s files."""
    module = importlib.import_module(fmt.runtime_needs[0])
    return str(getattr(module, "__version__", "unknown")).replace("/", "-")


def ensure_converted(conversion: Conversion, fmt: Format, target: Path, replace: bool = False) -> bool:
    """Make `target` a usable conversion; True when it was converted now, False when the cache had it.
    `replace`: convert again even when the cached model looks usable (it did not open)."""
    if not replace and usable(target, conversion, fmt):
        return False
    with exclusive_lock(target, timeout=LOCK_TIMEOUT_S, what=f"the conversion of {target.name}", required=False):
        if not replace and usable(target, conversion, fmt):  # converted by another process while we waited
            return False
        console.info(
            f"backend=auto: converting {conversion.weights.name} to {fmt.runtime} once, for faster CPU inference "
            f"(cached in {target.parent}; backend=torch runs PyTorch)"
        )
        fmt.export(conversion_job(conversion, fmt, target))
    return True


def usable(target: Path, conversion: Conversion, fmt: Format) -> bool:
    """True when `target` holds a conversion of these weights as `conversion_job` makes it."""
    if not target.exists():
        return False
    try:
        meta = fmt.read_metadata(target)
    except Exception:  # unreadable: damaged or not ours, convert again
        return False
    return (
        meta.source_sha256 == conversion.sha256
        and meta.dynamic
        and not meta.nms
        and meta.precision == "fp32"
        and meta.version == __version__
    )


def conversion_job(conversion: Conversion, fmt: Format, target: Path) -> ExportJob:
    """The export of a conversion: FP32, dynamic batch and size, decoded outputs, traced on the CPU."""
    options = ExportOptions(
        batch=1,
        dynamic=True,
        half=False,
        int8=False,
        nms=False,
        simplify=False,
        opset=None,
        data=None,
        fraction=1.0,
        conf=0.25,
        iou=0.7,
        max_det=300,
    )
    meta = ExportMetadata(
        names=dict(conversion.names),
        imgsz=TRACE_SIZE,
        batch=1,
        dynamic=True,
        precision="fp32",
        nms=False,
        model=conversion.variant or conversion.weights.stem,
        source=conversion.weights.name,
        source_sha256=conversion.sha256,
        format=fmt.name,
        version=__version__,
    )
    return ExportJob(conversion.model, conversion.weights, options, meta, target, torch.device("cpu"), TRACE_SIZE)


def _format(runtime: str) -> Format:
    return get(CONVERTIBLE[runtime])
