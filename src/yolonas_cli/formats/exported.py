"""Exported files opened by the runtime of their format (`registry.format_of` tells which one).

    backend = open_exported("yolo_nas_s.onnx", device="cpu")   # a Backend with `metadata`
    engine = Engine(backend, backend.metadata.names, EngineSettings(imgsz=backend.metadata.imgsz))

Every exported backend reads the `ExportMetadata` from its file and exposes it as `metadata`, with `fixed_input`
((H, W) of a static export, else None) and `graph_nms` (the graph ends with NMS; see `engine.backend`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from yolonas_cli.core import console
from yolonas_cli.core.devices import select_device
from yolonas_cli.core.errors import UsageError, WeightsError
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.registry import BY_NAME, format_of


def open_exported(path: str | Path, device: str | int | torch.device | None = "auto", half: bool = False) -> Any:
    """The runtime backend of an exported model; its names, size and settings come from the file itself."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is None:
        raise UsageError(
            f"'{path}' is not an exported model (expected .onnx, .torchscript, .engine or an "
            f"OpenVINO folder *{BY_NAME['openvino'].suffix}/)"
        )
    if not path.exists():
        raise WeightsError(f"'{path}' does not exist")
    if half:
        console.warn(f"half=True does not change an exported model: its precision was fixed at export ({path.name})")
    return fmt.open_backend(path, device if isinstance(device, torch.device) else select_device(device))


def read_exported_metadata(path: str | Path) -> ExportMetadata:
    """The metadata of an exported model without building a runtime session where possible (cheap: for
    `NAS("x.onnx")` to know its names and size before a device is chosen)."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is None or not path.exists():
        raise WeightsError(f"'{path}' is not an exported model file or folder")
    return fmt.read_metadata(path)
