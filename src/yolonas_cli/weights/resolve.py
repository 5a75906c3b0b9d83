"""Turn a model argument (a path, or an official name such as `yolo_nas_s`) into a verified local file.

The weights cache is `cache_dir()`. Next to the cached files it keeps `weights.lock.json`, which records for
each name the sha256 seen at the first download (trust on first use, for records without a pinned sha256),
where it came from, and whether the licence notice was shown.

Environment variables:
    YOLONAS_WEIGHTS_DIR   the cache folder (overridden by an explicit `weights_dir`).
    YOLONAS_WEIGHTS_LOCK  a lock file to use instead of the packaged `weights.lock` (see `lock.py`); tests use
                          it to point the records' URLs at a local server.
"""

from __future__ import annotations

import difflib
import json
import os
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from yolonas_cli.core import console
from yolonas_cli.core.errors import DownloadError, UsageError
from yolonas_cli.core.files import atomic_write_bytes
from yolonas_cli.core.locking import exclusive_lock
from yolonas_cli.core.paths import expand_user, home_dir, path_inside
from yolonas_cli.weights.download import deadline_for, fetch_result, sha256_file
from yolonas_cli.weights.lock import WeightsRecord, find_record, known_names, load_lock

WEIGHTS_DIR_ENV = "YOLONAS_WEIGHTS_DIR"
CACHE_LOCK_NAME = "weights.lock.json"


def cache_dir(weights_dir: str | Path | None = None) -> Path:
    """The weights cache folder, created on demand.

    `weights_dir` if given, else `$YOLONAS_WEIGHTS_DIR`, else `$XDG_CACHE_HOME/yolo-nas` or
    `~/.cache/yolo-nas` (Windows: `%LOCALAPPDATA%/yolo-nas`)."""
    if weights_dir is not None and str(weights_dir):
        folder = expand_user(weights_dir)
    elif os.environ.get(WEIGHTS_DIR_ENV):
        folder = expand_user(os.environ[WEIGHTS_DIR_ENV])
    else:
        folder = _default_cache_root() / "yolo-nas"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the weights folder {folder} ({exc.strerror or exc}); "
            f"set {WEIGHTS_DIR_ENV} or pass another weights folder"
        ) from None
    return folder


def _default_cache_root() -> Path:
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    return home_dir() / ".cache"  # an empty HOME counts as unset (Path.home() would give "/")


def resolve_weights(name_or_path: str, weights_dir: str | Path | None = None, *, offline: bool = False) -> Path:
    """A local, verified weights file for `name_or_path`.

    - An existing file path is returned as is (not hashed).
    - A name from the weights lock (or an alias such as `yolo_nas_s`) gives `<cache>/<name>`: verified
      against the pinned sha256, or, where the lock pins none, against the sha256 recorded in
      `<cache>/weights.lock.json` at first use; downloaded (mirrors in turn) when absent, unless `offline`.
    - The lock file is the packaged one unless `$YOLONAS_WEIGHTS_LOCK` names another (this is how tests point
      the URLs at a local server).
    The licence of a named model is printed once per cache. Raises UsageError for an unknown name and
    DownloadError for a failed download or a cached file that does not match.

    One process at a time fills or checks a cache entry (`core.locking`): a second process asking for the
    same weights waits, then uses the finished file."""
    local = expand_user(name_or_path)
    if local.is_file():
        return local
    record = find_record(name_or_path)
    if record is None:
        raise UsageError(_not_found_message(name_or_path))
    cache = cache_dir(weights_dir)
    path = path_inside(cache, cache / record.name, f"the weights file of {record.name!r}")
    wait = deadline_for(record.size, MAX_WEIGHTS_BYTES) + 60
    with exclusive_lock(path, timeout=wait, what=f"the download of {record.name}"):
        if path.exists():
            _verify_cached(record, path, cache)
        elif offline:
            raise DownloadError(
                f"{record.name} is not in the weights cache and offline mode is on; run once "
                f"without offline mode or put the file by hand at {path}"
            )
        else:
            _download(record, path, cache)
        _show_licence_once(record, cache)
    return path


MAX_WEIGHTS_BYTES = 2 << 30
"""Largest weights download when the lock records no size (see `weights.download.MAX_BYTES`)."""


def payload_problem(path: Path) -> str | None:
    """Why `path` cannot be a weights file, or None when it may be one: `torch.save` writes a zip archive
    holding `<folder>/data.pkl`. Catches the usual wrong payloads (an HTML error or login page served with
    status 200, a gzip-encoded body, a truncated file) before they are cached or their hash recorded."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if not head:
        return "it is empty"
    if head.lstrip()[:1] == b"<":
        return "it is an HTML or XML page, not a weights file"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed, not a weights file"
    if not head.startswith(b"PK\x03\x04"):
        return "it is not a zip archive, which torch.save writes"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"it is a truncated or damaged zip archive ({exc})"
    if not any(name.endswith("/data.pkl") for name in names):
        return "it is a zip archive without the data.pkl that torch.save writes"
    return None


def _not_found_message(name: str) -> str:
    official = ", ".join(load_lock())
    close = difflib.get_close_matches(name, known_names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"model {name!r} not found: not a file, and not one of {official}.{hint}"


def _download(record: WeightsRecord, path: Path, cache: Path) -> None:
    result = fetch_result(
        record.urls,
        path,
        sha256=record.sha256,
        size=record.size,
        description=f"Downloading {record.name}",
        max_bytes=MAX_WEIGHTS_BYTES,
        validate=payload_problem,
    )
    _update_entry(
        cache,
        record.name,
        sha256=result.sha256,
        size=result.size,
        url=result.url,
        recorded=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _verify_cached(record: WeightsRecord, path: Path, cache: Path) -> None:
    """Check a cached file against the pinned sha256, else the recorded one, and that it is a weights file at
    all; record its hash if neither exists (trust on first use, never for a file that is not weights)."""
    entry = _read_state(cache)["weights"].get(record.name, {})
    actual_size = path.stat().st_size
    if record.size is not None and actual_size != record.size:
        raise _mismatch(path, f"has {actual_size} bytes, expected {record.size} (pinned in the weights lock)")
    actual = sha256_file(path)
    if record.sha256 is not None:
        expected, source = record.sha256, "pinned in the weights lock"
    elif entry.get("sha256"):
        expected, source = entry["sha256"], f"recorded at first download in {cache / CACHE_LOCK_NAME}"
    else:
        expected, source = None, ""
    if expected is not None and actual != expected:
        raise _mismatch(path, f"has sha256 {actual}, expected {expected} ({source})")
    problem = payload_problem(path)
    if problem is not None:
        raise _mismatch(path, f"is not usable: {problem}")
    if expected is None:  # put there by hand, or the record was lost: trust on first use
        _update_entry(
            cache,
            record.name,
            sha256=actual,
            size=actual_size,
            url=None,
            recorded=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )


def _mismatch(path: Path, what: str) -> DownloadError:
    return DownloadError(
        f"the cached weights file {path} {what}; it may be corrupt or tampered with: delete "
        f"{path} and run again to download it afresh"
    )


def _show_licence_once(record: WeightsRecord, cache: Path) -> None:
    if _read_state(cache)["weights"].get(record.name, {}).get("licence_shown"):
        return
    console.info(f"{record.name}: these weights are under the {record.licence_name}, see {record.licence_url}")
    _update_entry(cache, record.name, licence_shown=True)


def _read_state(cache: Path) -> dict[str, Any]:
    """The cache's own lock: {"version": 1, "weights": {name: {sha256, size, url, recorded, licence_shown}}}."""
    where = cache / CACHE_LOCK_NAME
    if not where.exists():
        return {"version": 1, "weights": {}}
    try:
        state = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DownloadError(
            f"cannot read the weights cache record {where} ({exc}); delete it to start the record afresh"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("weights"), dict):
        raise DownloadError(f"the weights cache record {where} is malformed; delete it to start the record afresh")
    return state


def _update_entry(cache: Path, name: str, **fields: Any) -> None:
    """Read, change and write back the cache's record under its own lock (entries of other weights may be
    written by other processes at the same time)."""
    where = cache / CACHE_LOCK_NAME
    with exclusive_lock(where, timeout=60, what=f"an update of {where}"):
        state = _read_state(cache)
        state["weights"].setdefault(name, {}).update(fields)
        text = json.dumps(state, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(where, text.encode("utf-8"), fsync=True)
