"""Read every supported YOLO-NAS weights file into one `Checkpoint`, and write our own format.

Formats, detected from the object that `safe_pickle.load` returns (never from the file name):

* ``sg-model-pickle`` - a whole pickled SuperGradients `YoloNAS_S/M/L` module (Ultralytics'
  `yolo_nas_*.pt`, or `torch.save(model)` with SG 3.1 - 3.7): the state dict is rebuilt from the module
  tree; class names, image processing and NMS defaults come from the model's attributes.
* ``sg-checkpoint`` - a SuperGradients `.pth` dict: `ema_net` (preferred, as SG does) or `net`.
* ``state-dict`` - a bare dict of tensors.
* ``yolonas`` - our own file written by `save_checkpoint`; `yolo-nas train` adds a ``training`` entry to its
  `last.pt` (the raw model, optimizer, scheduler position, EMA, scaler and RNG states), which every other mode
  ignores and `Checkpoint.training` hands to a resumed run.

A `module.` prefix is stripped only when every key has it. Tensors keep their dtype (fp16 stays fp16).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from yolonas_cli.core.errors import WeightsError
from yolonas_cli.core.files import atomic_file
from yolonas_cli.weights.metadata import PLAIN_DEPTH, Copier, normalise_processing
from yolonas_cli.weights.safe_pickle import MODEL_QUALNAMES, Stub, load, stub_state_dict

__all__ = ["FORMAT_TAG", "FORMAT_VERSION", "Checkpoint", "read_checkpoint", "save_checkpoint"]

FORMAT_TAG = "yolonas-cli"
FORMAT_VERSION = 1
_NMS_ATTRS = {
    "nms_iou": "_default_nms_iou",
    "nms_conf": "_default_nms_conf",
    "nms_top_k": "_default_nms_top_k",
    "max_predictions": "_default_max_predictions",
    "multi_label_per_box": "_default_multi_label_per_box",
    "class_agnostic_nms": "_default_class_agnostic_nms",
}
"""Our processing key -> the attribute of a pickled SG model that holds its predict() default."""
_SG_PARAM_KEYS = {
    "nms_iou": "iou",
    "nms_conf": "conf",
    "nms_top_k": "nms_top_k",
    "max_predictions": "max_predictions",
    "multi_label_per_box": "multi_label_per_box",
    "class_agnostic_nms": "class_agnostic_nms",
}
"""Our processing key -> the key in an SG checkpoint's `processing_params` dict."""


@dataclass(frozen=True)
class Checkpoint:
    """Weights and metadata read from any supported file.

    `state_dict` keys are those of the original model (a common `module.` prefix stripped);
    `processing` is normalised, e.g. {"resize_longest": 636, "pad_to": [640, 640], "pad_value": 114,
    "pad_mode": "center", "scale": 255.0, "nms_iou": 0.7, "nms_conf": 0.25}, or None when the file has none.
    """

    state_dict: OrderedDict[str, torch.Tensor]
    format: str
    class_names: tuple[str, ...] | None = None
    processing: dict | None = None
    model_name: str | None = None
    meta: dict = field(default_factory=dict)
    training: dict | None = None  # our format only: the state a resumed training run needs (see save_checkpoint)


# --------------------------------------------------------------------------------------------------
# Small validators
# --------------------------------------------------------------------------------------------------


def _describe(obj: object) -> str:
    """A short, safe description of what a file holds (types and a few key names, never values)."""
    if isinstance(obj, Stub):
        return f"a pickled {obj.qualname} object"
    if isinstance(obj, dict):
        keys = [repr(k[:40]) for k in list(obj)[:6] if isinstance(k, str)]
        return f"a dict with keys {', '.join(keys)}" if keys else "a dict without string keys"
    if isinstance(obj, torch.Tensor):
        return "a single tensor"
    return f"a {type(obj).__name__}"


def _with_tensors(value: Any, depth: int = 0) -> Any:
    """A copy of training state made of tensors (compact, on the CPU), str/int/float/bool/None, lists, tuples
    and dicts keyed by str or int (an optimizer's state is keyed by parameter index). TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        return _compact(value)
    if value is None or type(value) in (str, int, float, bool):
        return value
    if depth > PLAIN_DEPTH:
        raise TypeError("nested too deeply")
    if isinstance(value, list):
        return [_with_tensors(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_with_tensors(v, depth + 1) for v in value)
    if isinstance(value, Mapping) and all(type(k) in (str, int) for k in value):
        return {k: _with_tensors(v, depth + 1) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not training state")


def _class_names(value: object) -> tuple[str, ...] | None:
    """A tuple of class names, or None when the value is not a non-empty sequence of strings."""
    if isinstance(value, (list, tuple)) and value and all(type(v) is str for v in value):
        return tuple(value)
    return None


def _strip_module_prefix(state: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Drop a `module.` prefix (DataParallel / DDP) only if every key has it."""
    prefix = "module."
    if state and all(key.startswith(prefix) for key in state):
        return OrderedDict((key[len(prefix) :], value) for key, value in state.items())
    return state


def _state_dict(value: object, path: Path, what: str) -> OrderedDict[str, torch.Tensor]:
    """Validate a state dict (str keys, tensor values, not empty) or rebuild one from a model stub."""
    if isinstance(value, Stub) and value.qualname in MODEL_QUALNAMES:
        return _strip_module_prefix(stub_state_dict(value, source=f"'{path}'"))
    if not isinstance(value, dict):
        raise WeightsError(f"'{path}': {what} is {_describe(value)}, not a state dict of tensors")
    if not value:
        raise WeightsError(f"'{path}': {what} is an empty state dict")
    for key, tensor in value.items():
        if type(key) is not str or not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"'{path}': {what} has an entry that is not a named tensor")
    return _strip_module_prefix(OrderedDict(value))


# --------------------------------------------------------------------------------------------------
# The four formats
# --------------------------------------------------------------------------------------------------


def _model_name_from_class(class_name: str) -> str:
    """`YoloNAS_S` -> `yolo_nas_s`."""
    return "yolo_nas_" + class_name.rsplit("_", 1)[-1].lower()


def _from_model_pickle(model: Stub, path: Path) -> Checkpoint:
    """A whole pickled SG YOLO-NAS model: state dict from the module tree, metadata from attributes."""
    state = _strip_module_prefix(stub_state_dict(model, source=f"'{path}'"))
    nms = {key: model.get(attr) for key, attr in _NMS_ATTRS.items()}
    copier = Copier(f"'{path}'")
    processing, unknown = normalise_processing(model.get("_image_processor"), nms, copier)
    meta: dict[str, Any] = {"sg_class": model.qualname}
    for name, value in (model.state or {}).items():
        plain = copier.plain_or_none(value) if not name.startswith("_") else None
        if not name.startswith("_") and name != "training" and plain is not None:
            meta[name] = plain
    if unknown:
        meta["unrecognised_processing"] = unknown
    return Checkpoint(
        state_dict=state,
        format="sg-model-pickle",
        class_names=_class_names(copier.plain_or_none(model.get("_class_names"))),
        processing=processing,
        model_name=_model_name_from_class(model.class_name),
        meta=meta,
    )


def _from_sg_checkpoint(obj: dict, path: Path) -> Checkpoint:
    """An SG training/pretrained checkpoint dict: `ema_net` wins over `net`, as in SG's loader."""
    source = "ema_net" if obj.get("ema_net") is not None else "net"
    state = _state_dict(obj[source], path, f"its '{source}' entry")
    params = obj.get("processing_params")
    params = params if isinstance(params, dict) else {}
    nms = {key: params.get(sg_key) for key, sg_key in _SG_PARAM_KEYS.items()}
    copier = Copier(f"'{path}'")
    processing, unknown = normalise_processing(params.get("image_processor"), nms, copier)
    meta: dict[str, Any] = {
        "weights_from": source,
        "checkpoint_keys": copier.plain(sorted(k for k in obj if type(k) is str)),
    }
    for key, value in obj.items():
        if type(key) is str and type(value) in (str, int, float, bool):
            meta[key] = copier.plain(value)
    if unknown:
        meta["unrecognised_processing"] = unknown
    names = _class_names(copier.plain_or_none(params.get("class_names")))
    return Checkpoint(state, "sg-checkpoint", names, processing, None, meta)


def _from_own_format(obj: dict, path: Path) -> Checkpoint:
    """Our own file: check the version and every field's type."""
    version = obj.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        shown = version if type(version) is int and abs(version) < 10**6 else "unknown"
        raise WeightsError(
            f"'{path}' is a yolo-nas weights file of format version {shown}, but this "
            f"version reads only version {FORMAT_VERSION}; upgrade yolo-nas"
        )
    copier = Copier(f"'{path}'")
    names, model_name = copier.plain_or_none(obj.get("class_names")), obj.get("model_name")
    processing, meta = copier.plain_or_none(obj.get("processing")), copier.plain_or_none(obj.get("meta"))
    if obj.get("class_names") is not None and _class_names(names) is None:
        raise WeightsError(f"'{path}': its class_names are not a list of strings")
    if model_name is not None and type(model_name) is not str:
        raise WeightsError(f"'{path}': its model_name is not a string")
    training = obj.get("training")
    if training is not None:
        try:
            training = _with_tensors(training)
        except TypeError as exc:
            raise WeightsError(f"'{path}': its training state is damaged ({exc})") from None
        if not isinstance(training, dict):
            raise WeightsError(f"'{path}': its training state is not a dict")
    return Checkpoint(
        state_dict=_state_dict(obj.get("state_dict"), path, "its 'state_dict' entry"),
        format="yolonas",
        class_names=_class_names(names),
        processing=processing if isinstance(processing, dict) and processing else None,
        model_name=model_name,
        meta=meta if isinstance(meta, dict) else {},
        training=training,
    )


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read weights from a pickled SG model, an SG checkpoint, a bare state dict or our own format.

    Reading goes through `safe_pickle.load` (nothing in the file is executed). Raises WeightsError
    naming the file and what it holds when the structure is none of the four formats.
    """
    path = Path(path)
    obj = load(path)
    if isinstance(obj, Stub) and obj.kind == "module" and obj.qualname in MODEL_QUALNAMES:
        return _from_model_pickle(obj, path)
    if isinstance(obj, dict):
        if isinstance(obj.get("format"), str) and obj["format"] == FORMAT_TAG:
            return _from_own_format(obj, path)
        if obj.get("ema_net") is not None or obj.get("net") is not None:
            return _from_sg_checkpoint(obj, path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return Checkpoint(_state_dict(obj, path, "the state dict"), "state-dict")
    raise WeightsError(
        f"'{path}' holds {_describe(obj)}, not YOLO-NAS weights (expected a pickled YOLO-NAS model, "
        "an SG checkpoint with 'net'/'ema_net', a state dict of tensors or a yolo-nas weights file)"
    )


# --------------------------------------------------------------------------------------------------
# Writing our format
# --------------------------------------------------------------------------------------------------


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU tensor that owns exactly its own bytes (so a view never saves its whole base)."""
    tensor = tensor.detach().to("cpu")
    exact = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    if tensor.is_contiguous() and tensor.storage_offset() == 0 and exact:
        return tensor
    return tensor.contiguous().clone()


def _payload(
    state_dict: Mapping[str, torch.Tensor],
    class_names: Sequence[str] | None,
    model_name: str | None,
    processing: Mapping[str, Any] | None,
    meta: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict `save_checkpoint` writes, after checking that every field can be read back safely."""
    named = all(type(k) is str and isinstance(v, torch.Tensor) for k, v in state_dict.items())
    if not state_dict or not named:
        raise WeightsError("cannot save weights: the state dict must map names to tensors and not be empty")
    names = None if class_names is None else _class_names(list(class_names))
    if class_names is not None and names is None:
        raise WeightsError("cannot save weights: class_names must be a non-empty list of strings")
    if model_name is not None and type(model_name) is not str:
        raise WeightsError("cannot save weights: model_name must be a string")
    try:
        copier = Copier("cannot save weights")
        plain_processing = None if processing is None else copier.plain(dict(processing))
        plain_meta = copier.plain(dict(meta or {}))
    except TypeError as exc:
        raise WeightsError(f"cannot save weights: processing and meta must be plain data ({exc})") from exc
    payload = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "state_dict": OrderedDict((k, _compact(v)) for k, v in state_dict.items()),
        "class_names": None if names is None else list(names),
        "model_name": model_name,
        "processing": plain_processing,
        "meta": plain_meta,
    }
    if training is not None:
        try:
            payload["training"] = _with_tensors(dict(training))
        except TypeError as exc:
            raise WeightsError(
                f"cannot save weights: the training state must be tensors and plain data ({exc})"
            ) from exc
    return payload


def save_checkpoint(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    class_names: Sequence[str] | None,
    model_name: str | None,
    processing: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write our format atomically: `torch.save` of {"format": "yolonas-cli", "version": 1, "state_dict",
    "class_names", "model_name", "processing", "meta"} (and "training" when given) to a temp file in the same
    folder, then os.replace.

    Only plain data is accepted for processing/meta, so `read_checkpoint` can always read the file back; the
    training state may hold tensors too (and dicts keyed by int), nothing else.
    """
    target = Path(path)
    payload = _payload(state_dict, class_names, model_name, processing, meta, training)
    try:
        with atomic_file(target, fsync=True, keep_mode=True) as temp, temp.open("wb") as handle:
            torch.save(payload, handle)
    except OSError as exc:
        raise WeightsError(f"cannot write '{target}': {exc.strerror or exc}") from exc
    return target
