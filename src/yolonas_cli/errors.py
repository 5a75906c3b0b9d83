"""Error types. Every error a user can cause is one of these: the CLI prints its message on one line
(no traceback) and exits with `exit_code` (2 for usage mistakes, 1 for runtime failures)."""

from __future__ import annotations


class YoloNasError(Exception):
    """A runtime failure with a one-line message that names the problem and the fix (exit code 1)."""

    exit_code = 1


class UsageError(YoloNasError):
    """A bad argument or argument combination (exit code 2)."""

    exit_code = 2


class WeightsError(YoloNasError):
    """A weights file that cannot be read safely: unknown pickle global, truncated file, wrong shapes."""


class DownloadError(YoloNasError):
    """A download that failed: offline, HTTP error, timeout, or a hash mismatch."""


class MissingExtraError(YoloNasError):
    """An optional dependency is not installed; the message names the `pip install` command."""
