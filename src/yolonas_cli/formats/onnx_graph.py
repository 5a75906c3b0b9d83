"""Torch -> ONNX graph, the first step of the ONNX, OpenVINO and TensorRT exports: trace the export module,
attach the metadata, optionally slim, check.

The TorchScript-based `torch.onnx.export(dynamo=False)` is used: it needs no extra package (onnxscript) and
handles the custom `NonMaxSuppression` symbolic of `wrappers._NonMaxSuppression`. `dynamic=True` marks the
batch, height and width of `images` as free (and the anchor count of the decoded outputs, or the batch of
the end-to-end outputs).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from yolonas_cli.core.errors import MissingExtraError, UsageError
from yolonas_cli.core.install import pip_extra
from yolonas_cli.formats.metadata import INPUT_NAME, ExportMetadata

if TYPE_CHECKING:
    from yolonas_cli.formats.job import ExportJob

DEFAULT_OPSET = 17  # ONNX Runtime >= 1.13, OpenVINO 2023+, TensorRT 10 all read it
MIN_OPSET = 11  # TopK with a k input, ScatterND, NonMaxSuppression


def require(module: str, extra: str, what: str = "") -> Any:
    """Import an optional dependency, or MissingExtraError with the pip hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        need = f" (needed {what})" if what else ""
        raise MissingExtraError(f"{module} is not installed{need}: {pip_extra(extra)}") from None


def max_opset() -> int:
    """The highest opset both the torch exporter and the installed onnx support."""
    onnx = require("onnx", "onnx")
    from torch.onnx import _constants

    torch_max = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17)
    return min(int(torch_max), int(onnx.defs.onnx_opset_version()))


def resolve_opset(opset: int | None) -> int:
    """`opset` checked against [MIN_OPSET, max_opset()], or DEFAULT_OPSET (capped) when None."""
    top = max_opset()
    if opset is None:
        return min(DEFAULT_OPSET, top)
    if not MIN_OPSET <= opset <= top:
        raise UsageError(f"opset={opset} is out of range: use {MIN_OPSET} to {top} (torch and onnx installed here)")
    return opset


def dynamic_axes(meta: ExportMetadata) -> dict[str, dict[int, str]] | None:
    """The free axes of every input and output, or None for a static export."""
    if not meta.dynamic:
        return None
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for name in meta.output_names:
        axes[name] = {0: "batch"} if meta.nms else {0: "batch", 1: "anchors"}
    return axes


def trace_to_onnx(module: nn.Module, sample: torch.Tensor, path: Path, meta: ExportMetadata, opset: int) -> None:
    """torch.onnx.export of `module` on `sample` into `path` (no metadata yet)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the exporter itself
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(meta.output_names),
            dynamic_axes=dynamic_axes(meta),
            do_constant_folding=True,
            autograd_inlining=False,
        )


def finish_onnx(path: Path, meta: ExportMetadata, simplify: bool) -> None:
    """Slim (when asked and installed), write the metadata, run the checker; rewrites `path` in place."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path))
    if simplify:
        model = slim(model)
    write_metadata(model, meta)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def slim(model: Any) -> Any:
    """onnxslim's constant folding and fusions, when onnxslim is installed (a warning otherwise)."""
    from yolonas_cli.core import console

    try:
        import onnxslim
    except ImportError:
        console.warn("simplify=True needs onnxslim (pip install onnxslim); writing the graph unsimplified")
        return model
    return onnxslim.slim(model)


def write_metadata(model: Any, meta: ExportMetadata) -> None:
    """Replace the model's metadata_props with `meta`'s pairs, and name the producer."""
    from yolonas_cli.core.version import __version__

    del model.metadata_props[:]
    for key, value in meta.to_pairs().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "yolo-nas", __version__
    model.doc_string = f"YOLO-NAS {meta.model} exported by yolo-nas {__version__}"


def read_metadata(path: Path) -> ExportMetadata:
    """The metadata of an ONNX file we wrote (only the header is parsed, not the weights)."""
    onnx = require("onnx", "onnx", "to read ONNX metadata")
    model = onnx.load(str(path), load_external_data=False)
    return ExportMetadata.from_pairs({p.key: p.value for p in model.metadata_props}, str(path))


def build_onnx(
    job: ExportJob,
    path: Path,
    *,
    half: bool | None = None,
    nms: bool | None = None,
    simplify: bool | None = None,
    precision: str | None = None,
) -> Path:
    """Write the checked ONNX graph of `job` (optionally overriding half/nms/simplify) to `path`."""
    from dataclasses import replace

    half = job.options.half if half is None else half
    nms = job.options.nms if nms is None else nms
    meta = replace(job.meta, nms=nms, precision=precision or ("fp16" if half else "fp32"), format="onnx")
    trace_to_onnx(job.module(half=half, nms=nms), job.sample(), path, meta, resolve_opset(job.options.opset))
    finish_onnx(path, meta, job.options.simplify if simplify is None else simplify)
    return path
