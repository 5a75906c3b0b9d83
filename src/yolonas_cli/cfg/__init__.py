"""Typed arguments of every mode: defaults, one-line help, validation and coercion.

Each mode has one dataclass (`PredictArgs`, `TrackArgs`, `ValArgs`, `ExportArgs`, `InfoArgs`, `BenchmarkArgs`,
`TrainArgs`, `ServeArgs`), all built on `CommonArgs` (predict's and track's on `FrameArgs`, what they share). Every
field carries its help line and its check in `dataclasses.field(metadata=...)`, and `__post_init__` runs the checks,
so an instance (from the CLI parser, from `make_args`, from direct construction or from `dataclasses.replace`)
always holds valid, normalised values, or construction raises `UsageError` with one line naming the argument, the
bad value and what is allowed.

Types are checked strictly (see `core.checks`):
- a bool field takes only True or False (`save=1` is an error; the CLI parser turns true/false into bools);
- an int field takes only integers (`batch=2.5` and `batch=2.0` are errors);
- a float field takes integers or floats (`conf=1` is 1.0); `conf=abc` is an error;
- a text field (model, data, name, ...) takes str or a path-like object (turned into str).
Normalisation: `device=N` → "cuda:N"; `imgsz` → int or (h, w) tuple, rounded up to a multiple of 32 with a
warning; `classes=N` → [N]; `format=trt|tensorrt` → "engine"; `slice=N` → (N, N); choices are lower-cased.

The package: `values` (checks of mode-specific values), `builders` (the field builders), `modes` (the inference
modes' dataclasses), `train` (TrainArgs), and here the mode table and the helpers every caller uses.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from yolonas_cli.cfg.modes import (
    BenchmarkArgs,
    CommonArgs,
    ExportArgs,
    FrameArgs,
    InfoArgs,
    PredictArgs,
    ServeArgs,
    TrackArgs,
    ValArgs,
)
from yolonas_cli.cfg.train import TrainArgs
from yolonas_cli.cfg.values import BENCHMARK_FORMATS, EXPORT_FORMATS, FORMAT_ALIASES
from yolonas_cli.core.checks import boolean, did_you_mean, format_value
from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine.slice_config import SliceConfig

__all__ = [
    "BENCHMARK_FORMATS",
    "EXPORT_FORMATS",
    "FORMAT_ALIASES",
    "MODES",
    "MODE_ARGS",
    "BenchmarkArgs",
    "CommonArgs",
    "ExportArgs",
    "FrameArgs",
    "InfoArgs",
    "PredictArgs",
    "ServeArgs",
    "TrackArgs",
    "TrainArgs",
    "ValArgs",
    "arg_fields",
    "args_class",
    "check_keys",
    "defaults",
    "describe",
    "example_value",
    "field_names",
    "is_bool_field",
    "make_args",
    "slice_config",
    "unknown_key_message",
]


def unknown_key_message(mode: str, key: str, where: str = "") -> str:
    """The one-line error for a key that `mode` does not take (`where` names a cfg file, if any)."""
    hint = did_you_mean(key, field_names(mode)) or f" Run 'yolo-nas {mode} --help' to list the arguments."
    return f"'{key}'{where} is not a valid argument for {mode}.{hint}"


MODE_ARGS: dict[str, type[CommonArgs]] = {
    "predict": PredictArgs,
    "track": TrackArgs,
    "val": ValArgs,
    "export": ExportArgs,
    "info": InfoArgs,
    "benchmark": BenchmarkArgs,
    "train": TrainArgs,
    "serve": ServeArgs,
}
MODES = tuple(MODE_ARGS)  # in the order the help lists them


# ---------------------------------------------------------------- the public helpers


def args_class(mode: str) -> type[CommonArgs]:
    """The dataclass of `mode`; UsageError (with did-you-mean) for an unknown mode."""
    if mode not in MODE_ARGS:
        hint = did_you_mean(mode, MODES) or f" Use one of {', '.join(MODES)}."
        raise UsageError(f"'{mode}' is not a valid mode.{hint}")
    return MODE_ARGS[mode]


def arg_fields(mode: str) -> dict[str, Any]:
    """Field name → dataclasses.Field of `mode`, in declaration order."""
    return {f.name: f for f in fields(args_class(mode))}


def field_names(mode: str) -> list[str]:
    """Every argument name of `mode`."""
    return list(arg_fields(mode))


def check_keys(mode: str, keys: Any, where: str = "") -> None:
    """UsageError for the first key that `mode` does not take."""
    valid = arg_fields(mode)
    for key in keys:
        if key not in valid:
            raise UsageError(unknown_key_message(mode, key, where))


def make_args(mode: str, **kwargs: Any) -> CommonArgs:
    """The validated arguments of `mode` from keyword values (the Python API's entry)."""
    check_keys(mode, kwargs)
    return args_class(mode)(**kwargs)


def defaults(mode: str) -> dict[str, Any]:
    """Argument name → default value of `mode`."""
    return {name: f.default for name, f in arg_fields(mode).items()}


def describe(mode: str) -> list[tuple[str, Any, str]]:
    """(name, default, one-line help) of every argument of `mode`."""
    return [(name, f.default, f.metadata["help"]) for name, f in arg_fields(mode).items()]


def example_value(mode: str, key: str) -> str:
    """A value to show in 'needs a value' errors: the default, else the field's example."""
    f = arg_fields(mode)[key]
    value = f.default if f.default is not None else f.metadata["example"]
    return format_value(value)


def is_bool_field(mode: str, key: str) -> bool:
    """True when `key` is a boolean argument of `mode` (a bare `key` on the command line means True)."""
    return arg_fields(mode)[key].metadata["check"] is boolean


def slice_config(args: FrameArgs | ValArgs) -> SliceConfig | None:
    """The sliced-inference settings of a predict, track or val run (None without `slice`); boxes of other
    classes are merged too with `agnostic_nms`."""
    if args.slice is None:
        return None
    return SliceConfig(
        size=args.slice,
        overlap=args.slice_overlap,
        full=args.slice_full,
        merge=args.slice_merge,
        metric=args.slice_metric,
        match_thresh=args.slice_thresh,
        agnostic=getattr(args, "agnostic_nms", False),
    )
