"""What is copied out of a weights file's unpickled objects: plain metadata under one bounded budget (`Copier`),
and SuperGradients' image processing description normalised into our processing keys
(`normalise_processing`). `checkpoint.py` reads the formats with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yolonas_cli.core.errors import WeightsError
from yolonas_cli.weights.safe_pickle import Stub

PLAIN_DEPTH = 16  # the deepest nesting copied (real metadata nests 2-3 levels)

MAX_COPIED_VALUES = 100_000
MAX_COPIED_CHARS = 4 << 20
"""What may be copied out of one file's pickle in all (metadata, processing, attributes): a YOLO-NAS file's
metadata is a few hundred values (class names, processing, training settings); 100,000 values and 4 Mi
characters leave room for a 10,000-class vocabulary. A pickle's memo lets a few KB describe a list nested
to 10**10 leaves ("billion laughs"): copied as a tree it would take all memory, so the copy stops here."""


class Copier:
    """Copies plain data out of one file's unpickled objects, all copies sharing one budget (see
    MAX_COPIED_VALUES); `source` names the file in the error raised when the budget runs out."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values = MAX_COPIED_VALUES
        self.chars = MAX_COPIED_CHARS

    def _take(self, value: Any) -> None:
        self.values -= 1
        if type(value) is str:
            self.chars -= len(value)
        if self.values < 0 or self.chars < 0:
            raise WeightsError(
                f"{self.source}: its metadata holds more than {MAX_COPIED_VALUES:,} values or "
                f"{MAX_COPIED_CHARS:,} characters (a YOLO-NAS file holds a few hundred); it is damaged or hostile"
            )

    def plain(self, value: Any, depth: int = 0) -> Any:
        """A copy made of str/int/float/bool/None, lists and str-keyed dicts (tuples become lists).

        Raises TypeError for anything else, so metadata can always be written and read back safely."""
        self._take(value)
        if value is None or type(value) in (str, int, float, bool):
            return value
        if depth > PLAIN_DEPTH:
            raise TypeError("nested too deeply")
        if isinstance(value, (list, tuple)):
            return [self.plain(v, depth + 1) for v in value]
        if isinstance(value, Mapping) and all(type(k) is str for k in value):
            return {k: self.plain(v, depth + 1) for k, v in value.items()}
        raise TypeError(f"{type(value).__name__} is not a plain value")

    def plain_or_none(self, value: Any) -> Any:
        """`plain(value)`, or None when the value is not plain."""
        try:
            return self.plain(value)
        except TypeError:
            return None

    def processing_steps(self, proc: object, depth: int = 0) -> list[tuple[str, dict]]:
        """Flatten a processing description into (class name, attributes) steps.

        Accepts the pickled objects (`ComposeProcessing` stub with `processings`) and SG's config form
        ({"ComposeProcessing": {"processings": [{"Name": {params}}, "Name", ...]}})."""
        self._take(proc)
        if depth > PLAIN_DEPTH:
            return [("<nested too deeply>", {})]
        if isinstance(proc, Stub) and proc.kind == "processing":
            name, params = proc.class_name, proc.state or {}
        elif isinstance(proc, dict) and len(proc) == 1 and isinstance(next(iter(proc)), str):
            name, params = next(iter(proc.items()))
        elif isinstance(proc, str):
            name, params = proc, {}
        elif isinstance(proc, (list, tuple)):
            return [step for item in proc for step in self.processing_steps(item, depth + 1)]
        else:
            return [(f"<{type(proc).__name__}>", {})]
        params = params if isinstance(params, dict) else {}
        if name == "ComposeProcessing":
            return self.processing_steps(params.get("processings", []), depth + 1)
        return [(name, params)]


# --------------------------------------------------------------------------------------------------
# Image processing
# --------------------------------------------------------------------------------------------------


def _pair(value: object) -> list[int] | None:
    """[h, w] from a 2-sequence of ints (SG output_shape), else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value):
        return [int(value[0]), int(value[1])]
    return None


def _resize_step(name: str, params: dict, out: dict) -> bool:
    """Resizing steps; True when recognised."""
    shape = _pair(params.get("output_shape"))
    if shape is None:
        return False
    if name == "DetectionLongestMaxSizeRescale":
        if shape[0] == shape[1]:
            out["resize_longest"] = shape[0]
        else:
            out["resize_fit"] = shape
        return True
    if name == "DetectionRescale":
        out["resize_to"] = shape
        return True
    return False


def _pad_step(name: str, params: dict, out: dict, copier: Copier) -> bool:
    """Padding steps; True when recognised."""
    modes = {"DetectionCenterPadding": "center", "DetectionBottomRightPadding": "bottom_right"}
    shape = _pair(params.get("output_shape"))
    if name not in modes or shape is None:
        return False
    out["pad_to"] = shape
    out["pad_value"] = copier.plain_or_none(params.get("pad_value", 114))
    out["pad_mode"] = modes[name]
    return True


def _pixel_step(name: str, params: dict, out: dict, copier: Copier) -> bool:
    """Scaling, normalisation, channel order and layout steps; True when recognised."""
    if name == "StandardizeImage" and type(params.get("max_value", 255.0)) in (int, float):
        out["scale"] = float(params.get("max_value", 255.0))
    elif name == "NormalizeImage":
        out["mean"] = copier.plain_or_none(params.get("mean"))
        out["std"] = copier.plain_or_none(params.get("std"))
    elif name == "ReverseImageChannels":
        out["reverse_channels"] = True
    elif name == "ImagePermute":
        permutation = copier.plain_or_none(params.get("permutation", [2, 0, 1]))
        if permutation != [2, 0, 1]:
            out["permute"] = permutation
    else:
        return False
    return True


def normalise_processing(image_processor: object, nms: dict, copier: Copier) -> tuple[dict | None, list[str]]:
    """Our processing dict from SG processing steps and NMS defaults, plus unrecognised step names."""
    out: dict[str, Any] = {}
    unknown: list[str] = []
    if image_processor is not None:
        for name, params in copier.processing_steps(image_processor):
            known = _resize_step(name, params, out) or _pad_step(name, params, out, copier)
            if not (known or _pixel_step(name, params, out, copier)):
                unknown.append(name)
    for key, value in nms.items():
        if type(value) in (int, float, bool):
            out[key] = value
    return (out or None), unknown
