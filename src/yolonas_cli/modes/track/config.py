"""Tracker settings: frozen dataclasses read from Ultralytics-style tracker YAML files.

The key names and defaults are Ultralytics' (``ultralytics/cfg/trackers/bytetrack.yaml`` and ``botsort.yaml``);
both files ship in this folder and are found by name (``tracker=bytetrack.yaml``) or read from a path. Keys left
out of a file take the defaults below. Mistakes are one :class:`~yolonas_cli.core.errors.UsageError` line that
names the key and what is allowed: an unknown key (with the closest known one), a value of the wrong type or
out of range, ``with_reid: True`` (ReID is not supported), a file that is not a small YAML mapping.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Union

import yaml

from yolonas_cli.core import safe_yaml
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.paths import expand_user

__all__ = [
    "SHIPPED",
    "TRACKER_TYPES",
    "BotSortConfig",
    "ByteTrackConfig",
    "TrackerConfig",
    "config_from_mapping",
    "load_tracker_config",
]

SHIPPED = ("bytetrack.yaml", "botsort.yaml")  # tracker files that ship with the package (this folder)
GMC_METHODS = ("sparseOptFlow", "orb", "none")
MAX_YAML_BYTES = 64 * 1024  # a tracker YAML is a dozen lines; anything bigger is not one


@dataclass(frozen=True)
class ByteTrackConfig:
    """ByteTrack settings (Ultralytics ``bytetrack.yaml``)."""

    tracker_type: str = "bytetrack"
    track_high_thresh: float = 0.25  # detections scoring at least this take part in the first association
    track_low_thresh: float = 0.1  # ... above this (and below the high one) in the second association
    new_track_thresh: float = 0.25  # an unmatched detection scoring at least this starts a new track
    track_buffer: int = 30  # frames (at 30 fps; scaled by the frame rate) a lost track is kept
    match_thresh: float = 0.8  # highest cost (1 - IoU, score-fused) matched in the first association
    fuse_score: bool = True  # cost = 1 - IoU * score instead of 1 - IoU (first and unconfirmed associations)

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_value(f.name, getattr(self, f.name), self.tracker_type)
        if self.track_low_thresh > self.track_high_thresh:
            raise UsageError(
                f"track_low_thresh={self.track_low_thresh} is above track_high_thresh={self.track_high_thresh}; "
                "allowed: track_low_thresh <= track_high_thresh"
            )


@dataclass(frozen=True)
class BotSortConfig(ByteTrackConfig):
    """BoT-SORT settings (Ultralytics ``botsort.yaml``); without ReID, so the last three keys are inert."""

    tracker_type: str = "botsort"
    gmc_method: str = "sparseOptFlow"  # camera-motion compensation: sparseOptFlow, orb or none
    proximity_thresh: float = 0.5  # ReID only: lowest IoU for an appearance match
    appearance_thresh: float = 0.8  # ReID only: lowest appearance similarity
    with_reid: bool = False  # must stay False: ReID is not supported
    model: str = "auto"  # ReID only: the appearance model


TrackerConfig = Union[ByteTrackConfig, BotSortConfig]
CONFIG_CLASSES: dict[str, type[ByteTrackConfig]] = {"bytetrack": ByteTrackConfig, "botsort": BotSortConfig}
TRACKER_TYPES = tuple(CONFIG_CLASSES)


# ---------------------------------------------------------------------------------------------- values


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _frames(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1_000_000


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 4096


_NUMBER = (_fraction, "a number from 0 to 1")
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "tracker_type": (lambda v: v in TRACKER_TYPES, ", ".join(TRACKER_TYPES)),
    "track_high_thresh": _NUMBER,
    "track_low_thresh": _NUMBER,
    "new_track_thresh": _NUMBER,
    "track_buffer": (_frames, "a whole number of frames from 0 to 1000000"),
    "match_thresh": _NUMBER,
    "fuse_score": (_flag, "True or False"),
    "gmc_method": (lambda v: v in GMC_METHODS, ", ".join(GMC_METHODS)),
    "proximity_thresh": _NUMBER,
    "appearance_thresh": _NUMBER,
    "with_reid": (lambda v: v is False, "False (ReID is not supported: BoT-SORT runs without it)"),
    "model": (_text, "a model name or path (used only with ReID)"),
}


def _check_value(key: str, value: Any, tracker_type: str) -> None:
    ok, allowed = _CHECKS[key]
    if not ok(value):
        raise UsageError(f"tracker {tracker_type}: {key}={value!r} is not allowed; allowed: {allowed}")


# ---------------------------------------------------------------------------------------------- loading


def _normalise(key: str, value: Any) -> Any:
    """YAML spellings of "off" for gmc_method (``none``, ``None``, ``null``) -> ``"none"``."""
    if key == "gmc_method" and (value is None or (isinstance(value, str) and value.lower() == "none")):
        return "none"
    return value


def config_from_mapping(data: Mapping[str, Any], source: str = "tracker") -> TrackerConfig:
    """The config of ``data`` (a parsed tracker YAML); ``source`` names it in error messages."""
    tracker_type = data.get("tracker_type")
    if tracker_type not in CONFIG_CLASSES:
        shown = "missing" if tracker_type is None else f"{tracker_type!r}"
        raise UsageError(f"{source}: tracker_type is {shown}; allowed: {', '.join(TRACKER_TYPES)}")
    cls = CONFIG_CLASSES[tracker_type]
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(
                f"{source}: unknown key '{key}' for tracker_type {tracker_type}{hint}; allowed: {', '.join(known)}"
            )
    values = {str(key): _normalise(str(key), value) for key, value in data.items()}
    try:
        return cls(**values)
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None


def _read_text(path: Path, source: str) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise UsageError(f"{source}: larger than {MAX_YAML_BYTES // 1024} KiB, not a tracker YAML")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not UTF-8 text, not a tracker YAML") from None


def _shipped_path(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(name)))


def load_tracker_config(tracker: str | os.PathLike[str]) -> TrackerConfig:
    """The config of ``tracker``: a shipped file name (:data:`SHIPPED`) or the path of a tracker YAML.

    Raises:
        UsageError: no such file, not a small UTF-8 YAML mapping, or a bad key or value in it.
    """
    text = os.fspath(tracker)
    path = expand_user(text)
    if not path.is_file() and text in SHIPPED:
        path = _shipped_path(text)
    source = f"tracker={text}"
    if not path.is_file():
        raise UsageError(f"{source}: no such file; use {' or '.join(SHIPPED)} or the path of a tracker YAML")
    try:
        data = safe_yaml.load(_read_text(path, source))  # bounded: an alias bomb is refused before it is built
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"{source}: not valid YAML ({reason})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: must hold a mapping of key: value, e.g. tracker_type: bytetrack")
    return config_from_mapping(data, source)
