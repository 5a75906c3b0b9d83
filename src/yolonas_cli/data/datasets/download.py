"""A missing dataset fetched from the archives its YAML's `download` key names and unpacked in place (through
`weights.download` and `weights.archives`); scripts are never run. Offline, one line names the URL and the
layout to create by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolonas_cli.core import console
from yolonas_cli.core.errors import DownloadError, YoloNasError
from yolonas_cli.core.locking import exclusive_lock
from yolonas_cli.core.paths import inside, path_inside
from yolonas_cli.data.datasets.yaml_spec import DATASETS_DIR_ENV, datasets_dir, split_paths, split_ready
from yolonas_cli.weights.archives import archive_name, unpack_archive
from yolonas_cli.weights.download import deadline_for, fetch, sha256_file


@dataclass(frozen=True)
class DownloadEntry:
    """One archive to fetch: unpacked into `dir` (relative to the dataset root)."""

    url: str
    dir: str = ".."
    sha256: str | None = None
    size: int | None = None
    splits: tuple[str, ...] | None = None


def download_entries(spec: dict[str, Any], yaml_path: Path) -> list[DownloadEntry]:
    """The archives of the YAML's `download` key (UsageError for scripts and unknown forms)."""
    raw = spec.get("download")
    if not raw:
        return []
    items = raw if isinstance(raw, list) else [raw]
    entries = []
    for item in items:
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or "://" not in item["url"]:
            raise YoloNasError(
                f"{yaml_path.name}: 'download' is a script or not a URL; yolo-nas runs no "
                "scripts: download the dataset by hand"
            )
        splits = item.get("splits")
        entries.append(
            DownloadEntry(
                item["url"],
                str(item.get("dir", "..")),
                item.get("sha256"),
                item.get("size"),
                tuple(splits) if splits else None,
            )
        )
    return entries


def _layout_hint(spec: dict[str, Any], root: Path, split: str) -> str:
    where = ", ".join(str(p) for p in split_paths(spec, split, root))
    return f"the '{split}' images belong at {where} and their YOLO labels in the matching labels/ folder"


def download_or_fail(spec: dict[str, Any], yaml_path: Path, root: Path, split: str, allowed: bool) -> None:
    entries = [e for e in download_entries(spec, yaml_path) if e.splits is None or split in e.splits]
    hint = _layout_hint(spec, root, split)
    if not entries or not allowed:
        raise YoloNasError(
            f"dataset {yaml_path.name} not found: {hint} (datasets directory "
            f"{datasets_dir()}, set {DATASETS_DIR_ENV} to change it)"
        )
    for entry in entries:
        dest = _unpack_folder(root, entry, yaml_path)
        try:
            unpack_url(entry, dest)
        except DownloadError as exc:
            raise YoloNasError(
                f"dataset {yaml_path.name} is missing and its download failed: {exc}; "
                f"otherwise unpack it by hand: {hint}"
            ) from None
    if not all(map(split_ready, split_paths(spec, split, root))):
        raise YoloNasError(f"dataset {yaml_path.name} was downloaded but {hint}")


def _unpack_folder(root: Path, entry: DownloadEntry, yaml_path: Path) -> Path:
    """Where `entry` unpacks: `root / entry.dir`, which must lie inside the datasets folder (a YAML from
    elsewhere must not be able to unpack over `/etc` or `~/.ssh` with `dir: /etc` or `dir: ../../..`)."""
    folder = datasets_dir()
    dest = root / entry.dir
    if not inside(folder, dest):
        raise YoloNasError(
            f"{yaml_path.name}: the download {entry.url} would unpack into {dest.resolve()} (dir: {entry.dir!r}), "
            f"outside the datasets folder {folder}; datasets unpack only under it: fix 'path'/'dir' in the YAML "
            f"or set {DATASETS_DIR_ENV} to a folder that holds the dataset"
        )
    return dest.resolve()


MAX_ARCHIVE_BYTES = 64 << 30
"""Largest dataset archive downloaded when its size is not given: COCO's train2017.zip is 18 GiB."""


def unpack_url(entry: DownloadEntry, dest: Path) -> None:
    """Download `entry.url` next to `dest` (progress, resume, sha256/size when known) and unpack it into
    `dest`; the archive is deleted after a complete unpack. One process at a time per archive."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = path_inside(dest, dest / archive_name(entry.url), f"the archive of {entry.url}")
    wait = deadline_for(entry.size, MAX_ARCHIVE_BYTES)
    with exclusive_lock(archive, timeout=wait, what=f"the download of {entry.url}"):
        if not _usable(archive, entry):
            console.info(f"Downloading {entry.url} to {archive}")
            fetch(
                entry.url,
                archive,
                sha256=entry.sha256,
                size=entry.size,
                description=f"Downloading {archive.name}",
                max_bytes=MAX_ARCHIVE_BYTES,
            )
        console.info(f"Unpacking {archive.name} into {dest}")
        unpack_archive(archive, dest)
        archive.unlink()


def _usable(archive: Path, entry: DownloadEntry) -> bool:
    """True when `archive` is already there (put by hand) and matches the known size and sha256."""
    if not archive.is_file():
        return False
    if entry.size is not None and archive.stat().st_size != entry.size:
        return False
    return entry.sha256 is None or sha256_file(archive) == entry.sha256.lower()
