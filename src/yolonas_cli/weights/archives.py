"""Archives (.zip, .tar, .tar.gz, ...) unpacked safely and atomically, next to the downloader that fetches
them: members with absolute paths, `..` or links are refused, and each top-level entry is moved into place
only once the whole archive is extracted."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.paths import safe_basename

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def archive_name(url: str) -> str:
    """The file name of an archive URL (query string and fragment dropped), reduced to one safe component."""
    name = safe_basename(urlparse(url).path.rstrip("/"), fallback="")
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        raise YoloNasError(f"{url} is not a .zip or .tar archive; download the dataset by hand")
    return name


def unpack_archive(archive: Path, dest: Path) -> list[Path]:
    """Unpack `archive` into `dest` atomically per top-level entry: everything is first extracted into a
    hidden temporary folder inside `dest`, then each top-level file or folder is moved into place with
    `os.replace` (merged into an existing folder). Members with absolute paths or `..` are refused.
    Returns the top-level paths created or merged."""
    tmp = dest / f".{archive.name}.{secrets.token_hex(4)}.partial"
    tmp.mkdir(parents=True)
    try:
        _extract(archive, tmp)
        placed = []
        for item in sorted(tmp.iterdir()):
            if item.name == "__MACOSX":
                continue
            _merge(item, dest / item.name)
            placed.append(dest / item.name)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_member(name: str) -> bool:
    parts = Path(name).parts
    return not (Path(name).is_absolute() or ".." in parts or name.startswith(("/", "\\")))


def _extract(archive: Path, into: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _safe_member(n)]
                if bad:
                    raise YoloNasError(f"{archive} has unsafe member paths such as {bad[0]!r}; not unpacked")
                zf.extractall(into)
            return
        with tarfile.open(archive) as tf:
            bad = [m.name for m in tf.getmembers() if not _safe_member(m.name) or m.issym() or m.islnk()]
            if bad:
                raise YoloNasError(f"{archive} has unsafe members such as {bad[0]!r}; not unpacked")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # pragma: no cover (Python < 3.11.4; members were checked above)
                tf.extractall(into)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()
        raise YoloNasError(f"{archive} is not a valid archive ({exc}); it was deleted, run again") from None


def _merge(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; a folder onto an existing folder is merged (existing files are kept)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in sorted(src.iterdir()):
            _merge(child, dst / child.name)
