"""Paths from untrusted text, and files that must not be opened.

- `safe_basename(text)`: a file name taken from a URL or an archive, reduced to one harmless path component
  (percent-decoding, separators, `..`, control characters and over-long names cannot make it leave a folder);
- `inside(folder, path)` / `path_inside(folder, path, what)`: whether a path stays inside a folder once
  `..` and symbolic links are resolved, and the checked path (or one `YoloNasError` line);
- `is_special_file(path)`: a named pipe, device or socket: reading one blocks or never ends, so such files are
  skipped (with a warning by the caller) and never opened;
- `home_dir()`: the user's home, with an empty `$HOME` treated as unset (not as `/`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote

from yolonas_cli.core.errors import YoloNasError

MAX_NAME_BYTES = 200
"""Longest name kept (bytes of UTF-8): common file systems allow 255, and a suffix such as `.part` or a
temporary prefix must still fit."""
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def safe_basename(text: str, fallback: str = "download") -> str:
    """One harmless file name from a URL path or an archive member name.

    Percent-escapes are decoded (repeatedly, so `%252F` cannot survive as a separator), the last component
    after any `/` or `\\` is kept, control characters are dropped, a name made only of dots (``.``, ``..``)
    becomes `fallback`, and a name longer than MAX_NAME_BYTES is shortened keeping its suffix."""
    name = text
    for _ in range(4):  # bounded: each round removes one level of percent-encoding
        decoded = unquote(name)
        if decoded == name:
            break
        name = decoded
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_CHARS.sub("", name).strip()
    if not name.strip("."):
        return fallback
    return _shorten(name)


def _shorten(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    keep = f"{dot}{suffix}" if dot and len(suffix) <= 16 else ""
    budget = MAX_NAME_BYTES - len(keep.encode("utf-8"))
    head = (stem if keep else name).encode("utf-8")[:budget].decode("utf-8", "ignore")
    return head + keep


def inside(folder: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True when `path` is `folder` or below it once both are made absolute and their links resolved."""
    root = Path(folder).resolve()
    target = Path(path).resolve()
    return target == root or root in target.parents


def path_inside(folder: str | os.PathLike[str], path: str | os.PathLike[str], what: str) -> Path:
    """`path` made absolute, or a YoloNasError naming `what` when it would leave `folder`."""
    if not inside(folder, path):
        raise YoloNasError(f"{what} '{path}' is outside '{folder}', where it must stay; refusing to write there")
    return Path(path).resolve()


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file_kind(path: str | os.PathLike[str]) -> str | None:
    """ "a named pipe", "a socket", "a character device" or "a block device" for such a path (links followed,
    nothing opened); None for regular files, folders and paths that do not exist."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """True for an existing named pipe, socket or device (see `special_file_kind`)."""
    return special_file_kind(path) is not None


def home_dir() -> Path:
    """The home folder: `$HOME` when set and not empty, else the account's home (an empty HOME would otherwise
    make `~` mean `/`)."""
    home = os.environ.get("HOME")
    if home:
        return Path(home)
    try:
        import pwd

        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError, OSError):  # Windows, or an account without a passwd entry
        return Path(os.path.expanduser("~")) if os.name == "nt" else Path.cwd()


class SpecialFileError(OSError):
    """A path that names a pipe, device or socket where a regular file was expected."""


def read_regular_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The content of a regular file (at most `max_bytes` + 1 bytes when given, so a caller can tell that it
    is longer). A pipe, device or socket is refused with `SpecialFileError` without blocking: the file is
    opened non-blocking and checked with fstat before anything is read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecialFileError(f"'{path}' is not a regular file (a pipe, device or socket)")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        return handle.read() if max_bytes is None else handle.read(max_bytes + 1)


def read_regular_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """`read_regular_bytes` decoded (UnicodeDecodeError when it is not `encoding`)."""
    return read_regular_bytes(path).decode(encoding)


def expand_user(path: str | os.PathLike[str]) -> Path:
    """`Path(path).expanduser()` with `~` meaning `home_dir()`: an empty HOME is treated as unset."""
    text = os.fspath(path)
    if text == "~" or text.startswith(("~/", "~" + os.sep)):
        return home_dir() / text[2:] if len(text) > 1 else home_dir()
    return Path(text).expanduser()
