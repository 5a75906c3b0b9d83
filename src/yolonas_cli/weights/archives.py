"""Archives (.zip, .tar, .tar.gz, ...) unpacked safely and atomically, next to the downloader that fetches
them: members with absolute paths, `..`, links or special files are refused, and each top-level entry is moved
into place only once the whole archive is extracted.

Before anything is written, the archive's declared content is measured against bounds (a 1 MB zip can hold
a 1 GiB file of zeros): at most MAX_MEMBERS members, at most MAX_UNPACKED_BYTES in all, at most MAX_RATIO
times the archive's own size once past RATIO_FREE_BYTES, and the free space of the destination must hold it
with FREE_SPACE_MARGIN to spare. Declared sizes bound what is written: `zipfile` stops each member at its
declared size (and fails its CRC otherwise), and a tar member's size is its header's. A compressed tar is
measured as it is read, so a bomb is stopped at the first header past the bounds, not after decompressing
all of it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.paths import safe_basename

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
MAX_MEMBERS = 1_000_000
"""COCO's train2017 has 118,287 images (and as many label files); a million members is 4x that, and keeps the
member list (about 1 KB each in memory) under a gigabyte."""
MAX_UNPACKED_BYTES = 512 << 30
"""A sanity bound far above real detection datasets (COCO 2017 is 20 GB unpacked, Objects365 about 400 GB)."""
MAX_RATIO = 100
RATIO_FREE_BYTES = 64 << 20
"""Images barely compress (ratio ~1) and label text about 4-10x; a 100x archive is a bomb. Archives that
unpack to at most 64 MiB are not ratio-checked (a small labels-only zip may compress well)."""
FREE_SPACE_MARGIN = 256 << 20
"""Left free on the destination's disk after unpacking, for the run itself (caches, results)."""
_TAR_BLOCK = 512


@dataclass(frozen=True)
class _Content:
    """What an archive declares it holds."""

    members: int
    unpacked: int  # bytes written by unpacking it (tar: with its 512-byte headers)


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
                _check_room(archive, into, _zip_content(archive, zf))
                zf.extractall(into)
            return
        with tarfile.open(archive) as tf:
            _check_room(archive, into, _tar_content(archive, tf))
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # pragma: no cover (Python < 3.11.4; members were checked above)
                tf.extractall(into)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()
        raise YoloNasError(f"{archive} is not a valid archive ({exc}); it was deleted, run again") from None


def _zip_content(archive: Path, zf: zipfile.ZipFile) -> _Content:
    """The members of a zip (from its central directory), checked: safe names, no links, within the bounds."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _too_big(archive, f"has more than {MAX_MEMBERS} members")
    bad = [info.filename for info in infos if not _safe_member(info.filename) or _zip_is_link(info)]
    if bad:
        raise YoloNasError(f"{archive} has unsafe member paths such as {bad[0][:100]!r}; not unpacked")
    content = _Content(len(infos), sum(info.file_size for info in infos))
    _check_bounds(archive, content)
    return content


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    """True for a member stored as a Unix symbolic link (extracted as a file by zipfile, refused anyway)."""
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _tar_content(archive: Path, tf: tarfile.TarFile) -> _Content:
    """The members of a tar, read one header at a time and checked as they come: safe names, only files and
    folders (no links, devices, pipes or sparse files), within the bounds."""
    members = unpacked = 0
    for member in tf:  # bounded: stops at MAX_MEMBERS or once the declared bytes pass the bounds
        members += 1
        unpacked += _TAR_BLOCK + -(-member.size // _TAR_BLOCK) * _TAR_BLOCK
        if not _safe_member(member.name) or not (member.isfile() or member.isdir()) or member.issparse():
            raise YoloNasError(f"{archive} has unsafe members such as {member.name[:100]!r}; not unpacked")
        if members > MAX_MEMBERS:
            raise _too_big(archive, f"has more than {MAX_MEMBERS} members")
        _check_bounds(archive, _Content(members, unpacked))
    return _Content(members, unpacked)


def _check_bounds(archive: Path, content: _Content) -> None:
    packed = max(archive.stat().st_size, 1)
    if content.unpacked > MAX_UNPACKED_BYTES:
        raise _too_big(archive, f"would unpack to more than {_gib(MAX_UNPACKED_BYTES)}")
    if content.unpacked > RATIO_FREE_BYTES and content.unpacked > MAX_RATIO * packed:
        raise _too_big(
            archive,
            f"would unpack {_gib(packed)} into more than {_gib(content.unpacked)} (over {MAX_RATIO} times its size: "
            "a zip bomb or a damaged archive)",
        )


def _check_room(archive: Path, into: Path, content: _Content) -> None:
    free = shutil.disk_usage(into).free
    if content.unpacked + FREE_SPACE_MARGIN > free:
        raise YoloNasError(
            f"unpacking {archive.name} needs {_gib(content.unpacked)} and {_gib(FREE_SPACE_MARGIN)} to spare, but "
            f"only {_gib(free)} is free on the disk of {into.parent}: free some space or set the datasets folder "
            "elsewhere (YOLONAS_DATASETS_DIR)"
        )


def _too_big(archive: Path, what: str) -> YoloNasError:
    with contextlib.suppress(FileNotFoundError):
        archive.unlink()
    return YoloNasError(f"{archive} {what}; it was deleted and nothing was unpacked")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _merge(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; a folder onto an existing folder is merged (existing files are kept)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in sorted(src.iterdir()):
            _merge(child, dst / child.name)
