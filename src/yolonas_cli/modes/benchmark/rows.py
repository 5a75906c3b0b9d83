"""The rows of a run and how each is opened: the plan (original-style rows, formats, precisions), the
original-style rows (`original`), the PyTorch engine, and the exports (made once into the workspace, reused
while they match)."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from yolonas_cli.cfg import BenchmarkArgs, ExportArgs
from yolonas_cli.core import console
from yolonas_cli.core.files import size_mb
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.formats.exported import open_exported
from yolonas_cli.formats.registry import FORMATS, get
from yolonas_cli.model.blocks import partially_reparameterize_model
from yolonas_cli.modes.benchmark.original import BaselineProcess, baseline_engine
from yolonas_cli.modes.benchmark.records import AUTO, PHOTO, Opened, Unavailable, Variant
from yolonas_cli.modes.export import export_model
from yolonas_cli.weights.download import sha256_file


def available_formats(device: torch.device) -> list[str]:
    """Formats whose export and runtime are importable here (TensorRT only with CUDA; OpenVINO only off-GPU)."""
    needs_nothing_first = sorted(FORMATS, key=lambda f: bool(f.export_needs or f.runtime_needs))
    found = [f.name for f in needs_nothing_first if not f.exportable or f.runtime_installed()]
    if device.type != "cuda":
        found = [f for f in found if f != "engine"]
    elif "openvino" in found:
        found.remove("openvino")
    return found


def plan_variants(
    formats: Sequence[str], device: torch.device, half: bool, int8: bool, auto: bool = False
) -> list[Variant]:
    """The rows of a run: the baseline first, then each format at FP32, FP16 and INT8 where they apply; with
    `auto`, predict's default engine (backend=auto) after PyTorch FP32."""
    gpu = device.type in ("cuda", "mps")
    gpu = device.type in ("cuda", "mps")
    sg_precision = "fp16" if device.type == "cuda" else "fp32"  # SG >= 3.5 predicts under CUDA autocast
    variants = [Variant("pytorch", "fp32", baseline=True), Variant("pytorch", sg_precision, sg_predict=True)]
    for fmt in formats:
        variants.append(Variant(fmt, "fp32"))
        if auto and fmt == "pytorch":
            variants.append(Variant(AUTO, "fp32"))
        if half and (gpu or fmt == "pytorch"):  # on a CPU only PyTorch's row, to say why there is none
            variants.append(Variant(fmt, "fp16"))
        if int8 and fmt in ("onnx", "openvino", "engine") and not (fmt == "onnx" and gpu):
            variants.append(Variant(fmt, "int8"))
    return variants


@dataclass
class Context:
    """What every row shares."""

    args: BenchmarkArgs
    model: Detector  # fused
    unfused: torch.nn.Module
    device: torch.device
    settings: EngineSettings
    workspace: Path
    resources: ExitStack = field(default_factory=ExitStack)  # held open until the run ends (the baseline's process)
    _sources: dict[str, Detector] = field(default_factory=dict)
    _sha256: str | None = None

    def weights_sha256(self) -> str:
        """The sha256 of the weights file (computed once)."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.model.path)
        return self._sha256


def open_variant(ctx: Context, variant: Variant) -> Opened:
    """The engine of a row, exporting first when needed. Raises Unavailable or YoloNasError."""
    weights = ctx.model.path
    if variant.original_style:  # compared in this process, timed in its own (`original.BaselineProcess`)
        partial = variant.sg_predict
        model = partially_reparameterize_model(copy.deepcopy(ctx.unfused)) if partial else ctx.unfused
        engine = baseline_engine(model, ctx.model.names, ctx.device, ctx.settings, partial)
        child = BaselineProcess(weights, ctx.device, ctx.settings.imgsz, ctx.settings.batch, partial)
        ctx.resources.enter_context(child)
        return Opened(engine, weights, size_mb(weights), timed_pass=child.timed_pass)
    if variant.format == "pytorch":
        return Opened(_torch_engine(ctx, variant.precision), weights, size_mb(weights))
    if variant.format == AUTO:  # what `yolo-nas predict` runs: the weights converted once, from the cache
        engine = ctx.model.make_engine(ctx.settings, str(ctx.device), runtime="auto")
        path = getattr(engine.backend, "path", weights)
        return Opened(engine, path, size_mb(path))
    if variant.format == "engine" and ctx.device.type != "cuda":
        raise Unavailable("TensorRT needs an NVIDIA GPU (device=0)")
    backend = open_export(ctx, variant)
    return Opened(Engine(backend, dict(backend.metadata.names), ctx.settings), backend.path, size_mb(backend.path))


def _torch_engine(ctx: Context, precision: str) -> Engine:
    """The product's engine (`Detector.make_engine`); FP16 on a fresh copy so that the shared model stays FP32."""
    if precision == "fp32":
        return ctx.model.make_engine(ctx.settings, str(ctx.device), half=False)
    if ctx.device.type not in ("cuda", "mps"):
        raise Unavailable("FP16 needs a GPU")
    return Detector(ctx.model.path).make_engine(ctx.settings, str(ctx.device), half=True)


def _runtime_device(ctx: Context, variant: Variant) -> torch.device:
    """OpenVINO runs on the CPU whatever `device` is; the other formats on the benchmark's device."""
    return torch.device("cpu") if variant.format == "openvino" else ctx.device


def open_export(ctx: Context, variant: Variant) -> Any:
    """The opened export (a backend with `metadata` and `path`) of `variant` from the workspace: reused when
    its metadata matches, else exported."""
    fmt = get(variant.format)
    if not fmt.exportable:
        raise Unavailable(f"no exporter for format={variant.format}")
    source = _source_for(ctx, variant.precision)
    output = fmt.output_for(source.path)
    device = _runtime_device(ctx, variant)
    if output.exists():
        existing = _open_quietly(output, device)
        if existing is not None and _matches(existing.metadata, ctx, variant):
            console.info(f"{variant.title} {variant.precision.upper()}: reusing {output}")
            return existing
    path = export_model(source, _export_args(ctx, variant, source.path), hints=False)
    return open_exported(path, device)


def _open_quietly(path: Path, device: torch.device) -> Any:
    try:
        return open_exported(path, device)
    except Exception:  # unreadable, or written by another version: export again
        return None


def _source_for(ctx: Context, precision: str) -> Detector:
    """The weights loaded through a link `<workspace>/<stem>-<h>x<w>-b<batch>-<precision><suffix>` to the weights,
    so that each precision's export gets its own file name (exporters write beside the weights)."""

    if precision in ctx._sources:
        return ctx._sources[precision]
    h, w = ctx.settings.imgsz
    weights = ctx.model.path.resolve()
    link = ctx.workspace / f"{weights.stem}-{h}x{w}-b{ctx.args.batch}-{precision}{weights.suffix}"
    _link(weights, link)
    source = Detector(link)
    ctx._sources[precision] = source
    return source


def _link(target: Path, link: Path) -> None:
    """`link` -> `target`: a symlink, else a hard link, else a copy (kept when it already points there)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == target:
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    for make in (os.symlink, os.link):
        try:
            make(target, link)
            return
        except OSError:
            continue
    shutil.copyfile(target, link)


def _matches(meta: Any, ctx: Context, variant: Variant) -> bool:
    """True when an exported file was made from these weights at this size, batch and precision."""
    return (
        meta.source_sha256 == ctx.weights_sha256()
        and tuple(meta.imgsz) == ctx.settings.imgsz
        and meta.batch == ctx.args.batch
        and meta.precision == variant.precision
        and not meta.nms
        and not meta.dynamic
    )


def _export_args(ctx: Context, variant: Variant, weights: Path) -> ExportArgs:
    a = ctx.args
    int8 = variant.precision == "int8"
    device = "cpu" if variant.format == "openvino" else a.device
    return ExportArgs(
        model=str(weights),
        verbose=a.verbose,
        device=device,
        imgsz=a.imgsz,
        format=variant.format,
        batch=a.batch,
        half=variant.precision == "fp16",
        int8=int8,
        data=(a.data or str(calibration_yaml(ctx))) if int8 else None,
    )


def calibration_yaml(ctx: Context) -> Path:
    """A dataset YAML over the bundled sample photos (INT8 calibration when `data=` is not given)."""
    path = ctx.workspace / "calibration_photos.yaml"
    spec = {"path": str(PHOTO.parent), "train": ".", "val": ".", "names": dict(ctx.model.names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
