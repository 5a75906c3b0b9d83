"""What a mode says once, before its first result (train: before its first step): the header line (versions,
the device `device=auto` chose, the model, the runtime that runs it (`backend=auto` may have converted the
weights) and its size) and the warning for an `imgsz` a static exported model cannot honour.

    yolo-nas 0.1.0, Python 3.11.9, torch 2.13.0, cpu (AMD EPYC 7B13); yolo_nas_s (fused, OpenVINO): 12,167,600
    parameters, 31.8 GFLOPs at 640x640   <- one line
"""

from __future__ import annotations

import platform

import torch
from torch import nn

from yolonas_cli.core import console
from yolonas_cli.core.devices import device_name
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.core.version import __version__
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import Engine
from yolonas_cli.formats.registry import BY_NAME, CONVERTIBLE
from yolonas_cli.model.profile import count_flops, count_parameters


def header_line(model: Detector, engine: Engine) -> str:
    """The one-line header of a run of `model` through `engine` (see the module docstring)."""
    return f"{versions_and_device(engine.backend.device)}; {_model_text(model, engine)}"


def training_header_line(name: str, model: nn.Module, device: torch.device, imgsz: tuple[int, int]) -> str:
    """The header line of a training run: the versions, the device, and the model `name` as it trains (unfused,
    so more parameters and FLOPs than the fused model predict runs) at `imgsz` (h, w)."""
    h, w = imgsz
    params, flops = count_parameters(model), count_flops(model, h, w)
    return (
        f"{versions_and_device(device)}; {name} (unfused, as trained): {params:,} parameters, "
        f"{flops / 1e9:.3g} GFLOPs at {h}x{w}"
    )


def versions_and_device(device: torch.device) -> str:
    """The header's first part: yolo-nas, Python and torch versions, and the device with its name."""
    versions = f"yolo-nas {__version__}, Python {platform.python_version()}, torch {torch.__version__}"
    return f"{versions}, {device_name(device)}"


def _model_text(model: Detector, engine: Engine) -> str:
    meta = model.exported_metadata
    fixed = engine.backend.fixed_input
    h, w = fixed or engine.settings.imgsz
    if meta is not None:
        kind = "static" if fixed is not None else "dynamic"
        return f"{model.path.name} ({BY_NAME[meta.format].runtime}, {meta.precision.upper()}, {kind} input) at {h}x{w}"
    name = model.variant or model.path.name
    kind = ("fused, " if model.fused else "") + runtime_name(engine.backend.name)
    params, flops = model.profile((h, w))
    return f"{name} ({kind}): {params:,} parameters, {flops / 1e9:.3g} GFLOPs at {h}x{w}"


def runtime_name(backend: str) -> str:
    """The runtime's own name for a backend's name: torch -> PyTorch, openvino -> OpenVINO, onnxruntime -> ONNX
    Runtime (the weights converted by `backend=auto`)."""
    fmt = BY_NAME.get("pytorch" if backend == "torch" else CONVERTIBLE.get(backend, backend))
    return fmt.runtime if fmt is not None else backend


def print_header(model: Detector, engine: Engine) -> None:
    """Print the header line (verbose only) before the first run of `model`, as Ultralytics prints its model
    summary once: a Python loop calling `model(frame)` prints it once, not once per frame."""
    if console.is_verbose() and not model.header_shown:
        console.info(header_line(model, engine))
        model.header_shown = True


def warn_fixed_size(engine: Engine, imgsz: int | tuple[int, int], default: int | tuple[int, int]) -> None:
    """Warn when `imgsz` was asked for (it is not the mode's `default`) and the model is a static export of
    another size: the model runs at its own size."""
    fixed = engine.backend.fixed_input
    asked = imgsz_pair(imgsz)
    if fixed is None or asked == tuple(fixed) or asked == imgsz_pair(default):
        return
    console.warn(
        f"this model was exported with a fixed input of {fixed[0]}x{fixed[1]}, so it runs at that size, not at "
        f"imgsz={asked[0]}x{asked[1]} (export with dynamic=True to choose imgsz at run time)"
    )
