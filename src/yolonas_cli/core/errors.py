"""Error types. Every error a user can cause is one of these: the CLI prints its message on one line
(no traceback) and exits with `exit_code` (2 for usage mistakes, 1 for runtime failures)."""

from __future__ import annotations


class YoloNasError(Exception):
    """A runtime failure with a one-line message that names the problem and the fix (exit code 1).

    Line breaks in the message (which may quote user input) are folded and other control characters
    escaped, so the message is always exactly one line.
    """

    exit_code = 1

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


def one_line(text: str) -> str:
    """`text` on one line: runs of whitespace with line breaks become one space, other control characters
    (terminal escapes, NUL, ...) are shown escaped."""
    if text.isprintable():
        return text
    if any(ch in text for ch in "\n\r\t\v\f"):
        text = " ".join(text.split())
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class UsageError(YoloNasError):
    """A bad argument or argument combination (exit code 2)."""

    exit_code = 2


class WeightsError(YoloNasError):
    """A weights file that cannot be read safely: unknown pickle global, truncated file, wrong shapes."""


class DownloadError(YoloNasError):
    """A download that failed: offline, HTTP error, timeout, or a hash mismatch."""


class MissingExtraError(YoloNasError):
    """An optional dependency is not installed; the message names the `pip install` command."""
