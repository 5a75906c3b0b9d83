"""`yolo-nas info`: what it reports about a model is one dictionary, printed as aligned lines by the CLI and
returned by `NAS.info()`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from yolonas_cli.core import console
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.detector import Detector
from yolonas_cli.model.blocks import reparameterize_model
from yolonas_cli.model.profile import count_flops, count_layers, count_parameters
from yolonas_cli.weights.loader import LoadedWeights


def model_info(loaded: LoadedWeights, imgsz: tuple[int, int] = (640, 640), *, fused: bool = False) -> dict[str, Any]:
    """Variant, classes, input size, layers, parameters (unfused and fused), GFLOPs, file facts, licence.

    `fused` says whether `loaded.model` is already fused (its unfused counts are then derived from a
    fresh unfused build of the same architecture).
    """
    from yolonas_cli.model.yolo_nas import build_model
    from yolonas_cli.weights.download import sha256_file
    from yolonas_cli.weights.lock import find_record

    unfused = build_model(loaded.arch) if fused else loaded.model
    fused_model = loaded.model if fused else reparameterize_model(copy.deepcopy(loaded.model))
    height, width = imgsz
    record = find_record(loaded.path.name)
    return {
        "model": loaded.variant or "custom YOLO-NAS",
        "file": str(loaded.path),
        "format": loaded.file_format,
        "sha256": sha256_file(loaded.path),
        "classes": len(loaded.names),
        "names": loaded.names,
        "input_size": [height, width],
        "layers": count_layers(unfused),
        "layers_fused": count_layers(fused_model),
        "parameters": count_parameters(unfused),
        "parameters_fused": count_parameters(fused_model),
        "gflops": round(count_flops(unfused, height, width) / 1e9, 2),
        "gflops_fused": round(count_flops(fused_model, height, width) / 1e9, 2),
        "licence": f"{record.licence_name} ({record.licence_url})" if record else "see the weights' source",
    }


def exported_info(path: Path, meta: Any) -> dict[str, Any]:
    """What `info` reports for an exported model: the metadata stored in the file."""
    from yolonas_cli.weights.download import sha256_file

    digest = sha256_file(path) if path.is_file() else "(a folder)"
    return {
        "model": meta.model,
        "file": str(path),
        "format": f"exported {meta.format}",
        "sha256": digest,
        "classes": len(meta.names),
        "names": dict(meta.names),
        "input_size": list(meta.imgsz),
        "precision": meta.precision,
        "dynamic": meta.dynamic,
        "batch": meta.batch,
        "nms": (f"in the graph (conf {meta.conf}, iou {meta.iou}, max_det {meta.max_det})" if meta.nms else "no"),
        "source": f"{meta.source} (sha256 {meta.source_sha256})",
        "exported_by": f"{meta.producer} {meta.version}",
    }


_LABELS = {"input_size": "input size", "exported_by": "exported by", "gflops": "GFLOPs"}
_HIDDEN = {"names", "layers_fused", "parameters_fused", "gflops_fused"}


def info_text(info: dict[str, Any]) -> str:
    """`model_info` or `exported_info` as aligned `field: value` lines (class names abbreviated)."""
    names = list(info["names"].values())
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    rows = []
    for key, value in info.items():
        if key in _HIDDEN:
            continue
        if key == "classes":
            value = f"{value}: {shown}"
        elif key == "input_size":
            value = "x".join(map(str, value))
        elif key in ("layers", "parameters", "gflops"):
            fused = info[f"{key}_fused"]
            value = f"{value:,} (fused {fused:,})" if key != "gflops" else f"{value} (fused {fused})"
        rows.append((_LABELS.get(key, key), value))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args: Any) -> int:
    """`yolo-nas info`: print the model facts for `args.model` at `args.imgsz`."""
    info(Detector(args.model, weights_dir=args.weights_dir), args.imgsz, verbose=True)
    return 0


def info(model: Detector, imgsz: int | tuple[int, int] = 640, verbose: bool = True) -> dict[str, Any]:
    """The facts of `model` at `imgsz` (see `model_info` and `exported_info`), printed when `verbose`."""
    meta = model.exported_metadata
    if meta is not None:
        facts = exported_info(model.path, meta)
    else:
        facts = model_info(model.loaded, imgsz_pair(imgsz), fused=model.fused)
    if verbose:
        console.text(info_text(facts))
    return facts
