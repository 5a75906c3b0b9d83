"""The field builders of the argument dataclasses: `arg` (a default, a one-line help, a check, the accepted
text types, an example), and one builder per argument shared by several modes.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from yolonas_cli.cfg.values import ray_target, tile
from yolonas_cli.core.checks import (
    Check,
    boolean,
    choice,
    classes,
    integer,
    number,
    text,
)
from yolonas_cli.engine.slice_config import MATCH_METRICS, MERGE_METHODS
from yolonas_cli.formats import registry


def arg(default: Any, help: str, check: Check, text_types: tuple[type, ...] = (), example: Any = None) -> Any:
    """A dataclass field with its one-line `help` and its `check`.

    text_types: for fields that take text, the types a parsed command-line literal may keep; the CLI parser
    falls back to the typed text for any other type (`name=123` → "123"). example: a value shown in
    "needs a value" errors when the default is None.
    """
    meta = {"help": help, "check": check, "text_types": text_types, "example": example}
    return field(default=default, metadata=meta)


def conf_arg(default: float) -> Any:
    return arg(default, "confidence threshold: boxes scoring below it are dropped", number(0, 1))


def iou_arg() -> Any:
    return arg(0.7, "IoU threshold of non-maximum suppression", number(0, 1))


def max_det_arg() -> Any:
    return arg(300, "most detections kept per image", integer(1))


def batch_arg(default: int, what: str = "images per batch") -> Any:
    return arg(default, what, integer(1))


def half_arg(what: str = "run in FP16 (CUDA only)") -> Any:
    return arg(False, what, boolean)


def classes_arg() -> Any:
    return arg(
        None,
        "keep only these class ids, e.g. classes=0 or classes=[0,2] (None = all)",
        classes,
        example=[0, 2],
    )


def flag_arg(default: bool, help: str) -> Any:
    return arg(default, help, boolean)


def project_arg(mode: str) -> Any:
    return arg(
        None,
        "folder that holds the run folders (None = runs/detect)",
        text(True),
        (str,),
        example="runs/detect",
    )


def name_arg(mode: str) -> Any:
    return arg(
        None,
        f"run folder name (None = {mode}; {mode}2, {mode}3, ... when it exists)",
        text(True),
        (str,),
        example=mode,
    )


def exist_ok_arg() -> Any:
    return flag_arg(False, "reuse an existing run folder instead of numbering a new one")


def slice_arg() -> Any:
    return arg(
        None,
        "sliced inference: tile size N or h,w in pixels, e.g. slice=640 (None = the whole image at once)",
        tile,
        example=640,
    )


def slice_overlap_arg() -> Any:
    return arg(0.2, "fraction of a tile shared with its neighbours, in [0, 1)", number(0, 1, high_open=True))


def slice_full_arg() -> Any:
    return flag_arg(False, "with slice: also run the whole image, for large objects")


def slice_merge_arg() -> Any:
    return arg(
        "nmm",
        "with slice: merge boxes across tiles by nmm (enclosing box) or nms (keep the best)",
        choice(MERGE_METHODS),
        (str,),
    )


def slice_metric_arg() -> Any:
    return arg(
        "ios",
        "with slice: boxes match by ios (intersection over the smaller box) or iou",
        choice(MATCH_METRICS),
        (str,),
    )


def slice_thresh_arg() -> Any:
    return arg(0.5, "with slice: boxes match when slice_metric is above this", number(0, 1))


def ray_arg() -> Any:
    return arg(
        None,
        "run on Ray: auto (the running cluster), local (start one here) or ray://host:port (None = no Ray)",
        ray_target,
        (str,),
        example="local",
    )


def backend_arg(default: str) -> Any:
    return arg(
        default,
        "runtime of .pt weights: auto (on a CPU the fastest installed: openvino, onnxruntime, else torch; "
        "converted once and cached), torch, openvino or onnxruntime",
        choice(registry.BACKENDS, registry.BACKEND_ALIASES),
        (str,),
    )
