"""The pinned records of the official weights (`weights.lock`, JSON, shipped inside the package).

Layout of the file::

    {"_comment": ..., "version": 1,
     "aliases": {"yolo_nas_s": "yolo_nas_s.pt", ...},
     "weights": {"yolo_nas_s.pt": {"urls": [...], "sha256": null | "<64 hex>", "size": null | int,
                                   "variant": "s", "input_size": [640, 640], "num_classes": 80,
                                   "class_names": "coco80", "format": "sg-model-pickle",
                                   "licence": {"name": ..., "url": ...}}, ...}}

The environment variable `YOLONAS_WEIGHTS_LOCK` names another file of the same layout to use instead of the
packaged one (tests use it to point the URLs at a local server).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolonas_cli.core.errors import WeightsError
from yolonas_cli.core.paths import expand_user

LOCK_ENV = "YOLONAS_WEIGHTS_LOCK"
FORMATS = ("sg-model-pickle", "sg-checkpoint")
VARIANTS = ("s", "m", "l")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WeightsRecord:
    """One pinned weights file: where to get it, how to check it, and what it is."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    variant: str
    input_size: tuple[int, int]
    num_classes: int
    class_names: str
    format: str
    licence_name: str
    licence_url: str


def default_lock_path() -> Path:
    """The lock file in use: `$YOLONAS_WEIGHTS_LOCK` if set, else the packaged `bundled/weights.lock`."""
    override = os.environ.get(LOCK_ENV)
    if override:
        return expand_user(override)
    return Path(__file__).parents[1] / "bundled" / "weights.lock"


def load_lock(path: str | Path | None = None) -> dict[str, WeightsRecord]:
    """All records of the lock file at `path` (default: `default_lock_path()`), keyed by name.

    Raises WeightsError with a one-line message naming the file and the bad entry when the file is unreadable
    or an entry is malformed."""
    return _read(path)[0]


def load_aliases(path: str | Path | None = None) -> dict[str, str]:
    """The lock file's aliases: extra name -> record name."""
    return _read(path)[1]


def find_record(name: str, path: str | Path | None = None) -> WeightsRecord | None:
    """The record for `name` (a record name or an alias), or None when the lock does not know it."""
    records, aliases = _read(path)
    return records.get(aliases.get(name, name))


def known_names(path: str | Path | None = None) -> list[str]:
    """Record names then aliases, as accepted by `find_record` (for messages and suggestions)."""
    records, aliases = _read(path)
    return [*records, *aliases]


def _read(path: str | Path | None) -> tuple[dict[str, WeightsRecord], dict[str, str]]:
    where = Path(path) if path is not None else default_lock_path()
    try:
        doc = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read the weights lock {where} ({exc}); reinstall yolo-nas or fix ${LOCK_ENV}"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("weights", {}), dict):
        raise WeightsError(f"weights lock {where}: expected an object with a 'weights' object")
    records = {name: _record(where, name, entry) for name, entry in doc.get("weights", {}).items()}
    aliases = _aliases(where, doc.get("aliases", {}), records)
    return records, aliases


def _aliases(where: Path, raw: Any, records: dict[str, WeightsRecord]) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise WeightsError(f"weights lock {where}: 'aliases' must be an object of name -> record name")
    for alias, target in raw.items():
        if target not in records:
            raise WeightsError(f"weights lock {where}: alias {alias!r} points to unknown record {target!r}")
    return dict(raw)


def _record(where: Path, name: str, entry: Any) -> WeightsRecord:
    def bad(field: str, expected: str) -> WeightsError:
        return WeightsError(f"weights lock {where}: entry {name!r}: field {field!r} must be {expected}")

    if not isinstance(entry, dict):
        raise WeightsError(f"weights lock {where}: entry {name!r} must be an object")
    urls = entry.get("urls")
    if not isinstance(urls, list) or not urls or not all(_is_url(u) for u in urls):
        raise bad("urls", "a non-empty list of http(s) URLs")
    sha256 = entry.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise bad("sha256", "null or 64 lower-case hex digits")
    size = entry.get("size")
    if size is not None and not _positive_int(size):
        raise bad("size", "null or a positive integer")
    if entry.get("variant") not in VARIANTS:
        raise bad("variant", f"one of {', '.join(VARIANTS)}")
    input_size = entry.get("input_size")
    if not (isinstance(input_size, list) and len(input_size) == 2 and all(map(_positive_int, input_size))):
        raise bad("input_size", "[height, width], two positive integers")
    if not _positive_int(entry.get("num_classes")):
        raise bad("num_classes", "a positive integer")
    if not isinstance(entry.get("class_names"), str) or not entry["class_names"]:
        raise bad("class_names", "a non-empty string")
    if entry.get("format") not in FORMATS:
        raise bad("format", f"one of {', '.join(FORMATS)}")
    licence = entry.get("licence")
    if not (isinstance(licence, dict) and isinstance(licence.get("name"), str) and _is_url(licence.get("url"))):
        raise bad("licence", 'an object {"name": ..., "url": "https://..."}')
    return WeightsRecord(
        name=name,
        urls=tuple(urls),
        sha256=sha256,
        size=size,
        variant=entry["variant"],
        input_size=(input_size[0], input_size[1]),
        num_classes=entry["num_classes"],
        class_names=entry["class_names"],
        format=entry["format"],
        licence_name=licence["name"],
        licence_url=licence["url"],
    )


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
