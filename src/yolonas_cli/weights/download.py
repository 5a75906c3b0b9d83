"""The one downloader (weights, datasets, http(s) image and video sources). Standard library only.

`fetch()` streams to `<dest>.part` next to `dest`, resumes an existing `.part` with an HTTP Range request,
retries transient failures (connection errors, timeouts, HTTP 5xx/408/429) with a short exponential backoff,
hashes while streaming and checks size and sha256 *before* the atomic rename to `dest`. Mirror URLs are tried
in turn. Every failure is a `DownloadError` with a one-line message naming the URL(s) and the fix.

A `.part` left by a network failure is kept, so that the next call resumes it; one that fails the size or
hash check is deleted (and a resumed file that fails is retried once from zero).

Bounds, so that no server can make a download hang or fill the disk:
- size: the expected size when known (exactly), else `max_bytes` (default MAX_BYTES); a larger announced
  Content-Length is refused before any byte is read, and a body that grows past it is cut and discarded;
- progress: at least STALL_BYTES every STALL_SECONDS (a server trickling a byte every few seconds never
  trips the per-read socket timeout); a stalled URL is given up (its `.part` kept to resume later);
- time: one deadline for the whole call, all tries and mirrors together: `deadline_for(size)`;
- content: only the identity encoding (a gzip-encoded body would be stored compressed) and no HTML page (a
  login or error page served with status 200); `validate(path)` lets the caller check the payload itself
  (e.g. that weights are a zip archive) before the file takes its final name.

Tests make the backoff instant by setting `BACKOFF_BASE = 0` (monkeypatch).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from yolonas_cli.core import console
from yolonas_cli.core.errors import DownloadError
from yolonas_cli.core.version import __version__

BACKOFF_BASE = 0.5  # seconds; retry k (0-based) waits BACKOFF_BASE * 2**k, capped at BACKOFF_MAX
BACKOFF_MAX = 8.0
CHUNK = 1 << 16
USER_AGENT = f"yolo-nas/{__version__} (python-urllib)"
_RETRY_STATUS = frozenset({408, 429})
MAX_BYTES = 2 << 30
"""Size cap when the size is not known: YOLO-NAS L in fp32 is 256 MiB, and an SG training checkpoint with its
EMA and optimizer state about three times that; 2 GiB leaves room and still stops an endless body early."""
STALL_SECONDS = 15.0
STALL_BYTES = 16 << 10
"""At least 16 KiB every 15 s (about 1 KiB/s): slower than any real link, so only a stalled or trickling
server trips it, and it trips within 15 s instead of never."""
DEADLINE_BASE = 300.0
DEADLINE_RATE = 64 << 10
"""The whole call must end within DEADLINE_BASE + size / DEADLINE_RATE seconds: five minutes for
connecting and retries, plus the time a slow (64 KiB/s, a poor mobile link) connection needs for the bytes;
about 73 minutes for the 256 MiB of YOLO-NAS L."""


class _Retryable(Exception):
    """A transient failure: worth another try on the same URL."""


class _Failed(Exception):
    """A failure of this URL that another try would not fix (404, 403, bad content): go to the next mirror."""


class _OutOfTime(Exception):
    """The deadline of the whole call has passed: no further try or mirror."""


@dataclass(frozen=True)
class _Limits:
    """The bounds of one `fetch_result` call (see the module docstring)."""

    max_bytes: int
    exact: bool  # max_bytes is the known size (not only a cap)
    deadline: float  # time.monotonic() value
    seconds: float  # the deadline as a duration, for messages

    @property
    def expected(self) -> str:
        return f"expected {'' if self.exact else 'at most '}{self.max_bytes}"


@dataclass(frozen=True)
class FetchResult:
    """What `fetch_result()` downloaded: the final path, the URL that served it, its sha256 and size."""

    path: Path
    url: str
    sha256: str
    size: int


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        _hash_stream(f, hasher, chunk)
    return hasher.hexdigest()


def deadline_for(size: int | None, max_bytes: int = MAX_BYTES) -> float:
    """Seconds a whole download of `size` bytes (unknown: `max_bytes`) may take (see DEADLINE_BASE)."""
    return DEADLINE_BASE + (size if size is not None else max_bytes) / DEADLINE_RATE


def fetch(
    urls: str | Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 30,
    retries: int = 3,
    description: str | None = None,
    max_bytes: int = MAX_BYTES,
    deadline: float | None = None,
    validate: Callable[[Path], str | None] | None = None,
) -> Path:
    """Download the first URL of `urls` that works to `dest` and return `dest`.

    `sha256`/`size`, when given, must match or nothing is kept. `timeout` is the socket timeout in seconds;
    `retries` is the number of extra tries per URL after a transient failure; `max_bytes` caps the size when
    `size` is unknown; `deadline` bounds the whole call in seconds (default `deadline_for(size)`);
    `validate(part)` returns a problem (text) when the downloaded bytes are not what was asked for, or None.
    Raises DownloadError."""
    return fetch_result(
        urls,
        dest,
        sha256=sha256,
        size=size,
        timeout=timeout,
        retries=retries,
        description=description,
        max_bytes=max_bytes,
        deadline=deadline,
        validate=validate,
    ).path


def fetch_result(
    urls: str | Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 30,
    retries: int = 3,
    description: str | None = None,
    max_bytes: int = MAX_BYTES,
    deadline: float | None = None,
    validate: Callable[[Path], str | None] | None = None,
) -> FetchResult:
    """Like `fetch()` but also returns the serving URL and the sha256/size computed while streaming."""
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("fetch() needs at least one URL")
    dest = Path(dest)
    _make_parent(dest)
    part = dest.with_name(dest.name + ".part")
    want_sha = sha256.lower() if sha256 else None
    seconds = deadline if deadline is not None else deadline_for(size, max_bytes)
    limits = _Limits(size if size is not None else max_bytes, size is not None, time.monotonic() + seconds, seconds)
    check = _Check(want_sha, size, validate)
    failures: list[tuple[str, str]] = []
    for url in url_list:
        if failures and want_sha is None:  # without a hash, never splice bytes from two servers
            _unlink(part)
        try:
            return _fetch_one(url, dest, part, check, limits, timeout, retries, description or dest.name)
        except _Failed as exc:
            failures.append((url, str(exc)))
        except _OutOfTime as exc:
            failures.append((url, str(exc)))
            break
        except OSError as exc:  # network errors are classified inside; what is left is the local disk
            raise DownloadError(
                f"cannot write {part} while downloading {url} ({exc.strerror or exc}); "
                "free disk space or choose another folder"
            ) from None
    raise DownloadError(_failure_message(dest, failures))


@dataclass(frozen=True)
class _Check:
    """What the finished bytes must be: the pinned sha256 and size, and the caller's own check."""

    sha256: str | None
    size: int | None
    validate: Callable[[Path], str | None] | None

    def problem(self, part: Path, digest: str, nbytes: int) -> str | None:
        if self.size is not None and nbytes != self.size:
            return f"got {nbytes} bytes, expected {self.size}"
        if self.sha256 is not None and digest != self.sha256:
            return f"sha256 {digest} does not match the pinned {self.sha256}"
        return self.validate(part) if self.validate is not None else None


def _make_parent(dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise DownloadError(
            f"cannot create the folder {dest.parent} for {dest.name} ({reason}); choose another folder"
        ) from None


def _failure_message(dest: Path, failures: list[tuple[str, str]]) -> str:
    tried = ", then ".join(f"{url} ({reason})" for url, reason in failures)
    return f"could not download {dest.name} from {tried}; check the network or put the file by hand at {dest}"


def _fetch_one(
    url: str,
    dest: Path,
    part: Path,
    check: _Check,
    limits: _Limits,
    timeout: float,
    retries: int,
    description: str,
) -> FetchResult:
    """Try one URL (with retries and one fresh restart if a resumed file turns out wrong)."""
    attempt, restarted = 0, False
    while True:  # bounded: at most `retries` retries and one restart, and by the deadline
        try:
            digest, nbytes, resumed_from = _transfer(url, part, timeout, description, limits)
        except _Retryable as exc:
            if attempt >= retries:
                raise _Failed(str(exc)) from None
            delay = min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX)
            if time.monotonic() + delay >= limits.deadline:
                raise _OutOfTime(f"{exc}; no time left for another try (deadline {limits.seconds:g} s)") from None
            console.warn(f"downloading {dest.name} from {url} failed ({exc}); retrying in {delay:g} s")
            time.sleep(delay)
            attempt += 1
            continue
        problem = check.problem(part, digest, nbytes)
        if problem is None:
            os.replace(part, dest)
            return FetchResult(dest, url, digest, nbytes)
        _unlink(part)
        if resumed_from and not restarted:  # the kept prefix may be stale: try once from zero
            restarted = True
            continue
        raise _Failed(f"{problem}; the download was discarded")


def _transfer(url: str, part: Path, timeout: float, description: str, limits: _Limits) -> tuple[str, int, int]:
    """Stream `url` into `part`, resuming it when it exists. Returns (sha256, total bytes, resumed offset)."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > limits.max_bytes:
        _unlink(part)
        offset = 0
    resp, offset = _open(url, part, offset, timeout)
    with resp:
        length = _content_length(resp)
        total = offset + length if length is not None else None
        _check_response(resp, total, limits)
        hasher = hashlib.sha256()
        if offset:
            with open(part, "rb") as f:
                _hash_stream(f, hasher, 1 << 20)
        progress = console.download_progress(description, total)
        with open(part, "ab" if offset else "wb") as out, progress as advance:
            advance(offset)
            written = _copy(resp, out, hasher, advance, timeout, _Meter(offset, limits, part))
            out.flush()
            os.fsync(out.fileno())
    received = offset + written
    if total is not None and received < total:
        raise _Retryable(f"connection closed after {received} of {total} bytes")
    return hasher.hexdigest(), received, offset


def _check_response(resp: http.client.HTTPResponse, total: int | None, limits: _Limits) -> None:
    """Refuse what is not the file itself before reading the body: a compressed encoding, an HTML page, or an
    announced size over the limit."""
    encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise _Failed(f"the server sent a body with Content-Encoding: {encoding[:40]}, not the file's own bytes")
    kind = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        raise _Failed(f"the server sent an HTML page ({kind}), not the file; the URL may be wrong or need a login")
    if total is not None and total > limits.max_bytes:
        raise _Failed(f"the server announces {total} bytes, {limits.expected}")


def _open(url: str, part: Path, offset: int, timeout: float) -> tuple[http.client.HTTPResponse, int]:
    """Open `url` asking for bytes from `offset` on. Returns the response and the offset it starts at."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # our .part is not a prefix the server can continue: start over
            _unlink(part)
            return _open(url, part, 0, timeout)
        raise _classify_http(exc.code, exc.reason) from None
    except (URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise _classify_error(exc, timeout) from None
    if offset and (resp.status != 206 or not _range_starts_at(resp, offset)):
        return resp, 0  # the server sent the whole file (200) or another range: restart from zero
    return resp, offset


def _range_starts_at(resp: http.client.HTTPResponse, offset: int) -> bool:
    content_range = resp.headers.get("Content-Range", "")
    return content_range.replace(" ", "").startswith(f"bytes{offset}-")


def _content_length(resp: http.client.HTTPResponse) -> int | None:
    value = resp.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _Meter:
    """Watches one transfer against the limits: size, progress per STALL_SECONDS window, the deadline."""

    def __init__(self, offset: int, limits: _Limits, part: Path) -> None:
        self.limits = limits
        self.part = part
        self.total = offset
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def count(self, nbytes: int) -> None:
        """Account for `nbytes` more; raises when a bound is crossed."""
        self.total += nbytes
        self.window_bytes += nbytes
        if self.total > self.limits.max_bytes:
            _unlink(self.part)
            raise _Failed(f"the body grew past {self.limits.max_bytes} bytes, {self.limits.expected}; discarded")
        now = time.monotonic()
        if now >= self.limits.deadline:
            raise _OutOfTime(f"not finished within the deadline of {self.limits.seconds:g} s ({self.total} bytes)")
        if now - self.window_start >= STALL_SECONDS:
            if self.window_bytes < STALL_BYTES:
                raise _Failed(
                    f"the transfer stalled: {self.window_bytes} bytes in {now - self.window_start:.0f} s "
                    f"(fewer than {STALL_BYTES}); {self.total} bytes are kept to resume later"
                )
            self.window_start, self.window_bytes = now, 0


def _copy(
    resp: http.client.HTTPResponse,
    out: IO[bytes],
    hasher: hashlib._Hash,
    advance: Callable[[int], object],
    timeout: float,
    meter: _Meter,
) -> int:
    """Copy the body to `out`, hashing it. Network trouble mid-stream is a _Retryable (the .part is kept).

    `read1` returns what one socket read gives, so the meter sees a trickle as it comes (a buffered `read(n)`
    would wait for all n bytes)."""
    written = 0
    while True:  # bounded by the meter: size cap, progress and deadline
        try:
            chunk = resp.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"{_reason(exc, timeout)} after {written} bytes") from None
        if not chunk:
            return written
        out.write(chunk)
        hasher.update(chunk)
        advance(len(chunk))
        written += len(chunk)
        meter.count(len(chunk))


def _classify_http(code: int, reason: str) -> Exception:
    text = f"HTTP {code} {reason}".strip()
    if code >= 500 or code in _RETRY_STATUS:
        return _Retryable(text)
    return _Failed(text)


def _classify_error(exc: BaseException, timeout: float) -> Exception:
    inner = exc.reason if isinstance(exc, URLError) and isinstance(exc.reason, BaseException) else exc
    if isinstance(inner, socket.gaierror):
        return _Failed(f"cannot resolve the host: {inner.strerror or inner}")
    if isinstance(exc, ValueError):
        return _Failed(f"bad URL: {exc}")
    return _Retryable(_reason(inner, timeout))


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, URLError):
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _hash_stream(f: IO[bytes], hasher: hashlib._Hash, chunk: int) -> None:
    while block := f.read(chunk):
        hasher.update(block)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
