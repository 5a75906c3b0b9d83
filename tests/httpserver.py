"""A small HTTP server on 127.0.0.1 for tests (downloads, http(s) image/video sources). Standard library only.

    with serve({"/a.bin": data}, errors={"/a.bin": [500]}) as base:
        fetch(f"{base}/a.bin", ...)
        assert base.requests[-1].range is not None

`serve()` yields the base URL (a `str`, e.g. "http://127.0.0.1:43121") that also carries the request log and
the knobs, which a test may change while the server runs. Paths are keys with a leading "/" (added if absent).

Failure knobs (per path):
    status    {path: code}          always answer this status (e.g. 403).
    errors    {path: [code, ...]}   answer these statuses, one per request, before serving normally.
    hang      {path: n}             the first n requests get no answer until the server stops (timeouts).
    cut       {path: [nbytes, ...]} the first responses announce the full length but close the connection
                                    after nbytes of body (an interrupted transfer); an int means [int].
    redirect  {path: target}        answer 302 to `target` (a path on this server, or a full URL).
    headers   {path: {name: value}} extra response headers (e.g. Content-Type: text/html, Content-Encoding).
    length    {path: n}             announce Content-Length n whatever the body's length (a lying server).
    trickle   {path: (n, seconds)}  send the body n bytes at a time, waiting `seconds` between pieces.
    endless   {path: piece}         no Content-Length and a body that never ends: `piece` repeated until the
                                    client goes away or the server stops (at most ENDLESS_LIMIT bytes).
Global knobs: `ranges=False` ignores Range headers (always 200); `content_length=False` omits the length.
Files not in `files` are 404. Range requests get 206 (or 416 when the start is past the end).
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDLESS_LIMIT = 4 << 30  # an endless body stops here anyway, so a broken client cannot fill a test's disk


@dataclass
class Request:
    """One request the server saw."""

    path: str
    headers: dict[str, str]
    status: int = 0

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


@dataclass
class Knobs:
    files: dict[str, bytes]
    status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[int]] = field(default_factory=dict)
    hang: dict[str, int] = field(default_factory=dict)
    cut: dict[str, list[int]] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    length: dict[str, int] = field(default_factory=dict)
    trickle: dict[str, tuple[int, float]] = field(default_factory=dict)
    endless: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    content_length: bool = True


class ServedURL(str):
    """The base URL of a running server, with its request log (`requests`) and knobs (`knobs`)."""

    requests: list[Request]
    knobs: Knobs
    stop: threading.Event

    def url(self, path: str) -> str:
        """The full URL of `path` on this server."""
        return f"{self}{_norm(path)}"

    def requests_for(self, path: str) -> list[Request]:
        """The requests seen for `path`, in order."""
        return [r for r in self.requests if r.path == _norm(path)]


def _norm(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"


def _norm_keys(mapping: dict | None) -> dict:
    return {_norm(k): v for k, v in (mapping or {}).items()}


@contextmanager
def serve(
    files: dict[str, bytes],
    *,
    status: dict[str, int] | None = None,
    errors: dict[str, list[int]] | None = None,
    hang: dict[str, int] | None = None,
    cut: dict[str, int | list[int]] | None = None,
    redirect: dict[str, str] | None = None,
    headers: dict[str, dict[str, str]] | None = None,
    length: dict[str, int] | None = None,
    trickle: dict[str, tuple[int, float]] | None = None,
    endless: dict[str, bytes] | None = None,
    ranges: bool = True,
    content_length: bool = True,
) -> Iterator[ServedURL]:
    """Serve `files` ({path: bytes}) on an ephemeral 127.0.0.1 port; yields the base URL (see module doc)."""
    cuts = {k: ([v] if isinstance(v, int) else list(v)) for k, v in _norm_keys(cut).items()}
    knobs = Knobs(
        files=_norm_keys(files),
        status=_norm_keys(status),
        errors={k: list(v) for k, v in _norm_keys(errors).items()},
        hang=_norm_keys(hang),
        cut=cuts,
        redirect=_norm_keys(redirect),
        headers=_norm_keys(headers),
        length=_norm_keys(length),
        trickle=_norm_keys(trickle),
        endless=_norm_keys(endless),
        ranges=ranges,
        content_length=content_length,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    base = ServedURL(f"http://127.0.0.1:{server.server_address[1]}")
    base.requests, base.knobs, base.stop = [], knobs, threading.Event()
    server.base = base  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        base.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server_version = "yolonas-test/1"

    def log_message(self, format: str, *args: object) -> None:  # silence the default stderr log
        pass

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_GET(self) -> None:
        self._respond(head=False)

    def _respond(self, head: bool) -> None:
        base: ServedURL = self.server.base  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        record = Request(path, {k.lower(): v for k, v in self.headers.items()})
        base.requests.append(record)
        action = self._take_action(base.knobs, path)
        if action == "hang":
            base.stop.wait(30)
            self.close_connection = True
            return
        if isinstance(action, int):
            return self._send_status(record, action)
        if path in base.knobs.redirect:
            return self._send_redirect(record, base, base.knobs.redirect[path])
        if path in base.knobs.endless:
            return self._send_endless(record, base, base.knobs.endless[path])
        if path not in base.knobs.files:
            return self._send_status(record, 404)
        self._send_file(record, base.knobs, base.knobs.files[path], head, action)

    def _take_action(self, knobs: Knobs, path: str) -> int | str | None:
        """What to do for this request: a status code, "hang", "cut:<n>", or None (serve normally)."""
        with self.server.lock:  # type: ignore[attr-defined]
            if path in knobs.status:
                return knobs.status[path]
            if knobs.errors.get(path):
                return knobs.errors[path].pop(0)
            if knobs.hang.get(path, 0) > 0:
                knobs.hang[path] -= 1
                return "hang"
            if knobs.cut.get(path):
                return f"cut:{knobs.cut[path].pop(0)}"
        return None

    def _send_status(self, record: Request, code: int) -> None:
        record.status = code
        body = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_redirect(self, record: Request, base: ServedURL, target: str) -> None:
        record.status = 302
        self.send_response(302)
        self.send_header("Location", target if "://" in target else base.url(target))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_file(self, record: Request, knobs: Knobs, data: bytes, head: bool, action: object) -> None:
        start, end = 0, len(data)
        code = 200
        if knobs.ranges and record.range:
            parsed = _parse_range(record.range, len(data))
            if parsed is None:
                self._send_status(record, 416)
                return
            (start, end), code = parsed, 206
        record.status = code
        self.send_response(code)
        extra = knobs.headers.get(record.path, {})
        if "Content-Type" not in extra:
            self.send_header("Content-Type", mimetypes.guess_type(record.path)[0] or "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes" if knobs.ranges else "none")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        for name, value in extra.items():
            self.send_header(name, value)
        if record.path in knobs.length:
            self.send_header("Content-Length", str(knobs.length[record.path]))
            self.close_connection = True
        elif knobs.content_length:
            self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if head:
            return
        body = data[start:end]
        if isinstance(action, str) and action.startswith("cut:"):
            body = body[: int(action[4:])]
            self.close_connection = True
        if record.path in knobs.trickle:
            self._write_slowly(body, *knobs.trickle[record.path])
            return
        self.wfile.write(body)
        self.wfile.flush()

    def _write_slowly(self, body: bytes, piece: int, delay: float) -> None:
        """`body` in pieces of `piece` bytes, `delay` seconds apart (stops when the client or server goes)."""
        stop: threading.Event = self.server.base.stop  # type: ignore[attr-defined]
        for at in range(0, len(body), max(piece, 1)):
            try:
                self.wfile.write(body[at : at + piece])
                self.wfile.flush()
            except OSError:
                return
            if stop.wait(delay):
                return

    def _send_endless(self, record: Request, base: ServedURL, piece: bytes) -> None:
        record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.close_connection = True
        sent = 0
        while sent < ENDLESS_LIMIT and not base.stop.is_set():
            try:
                self.wfile.write(piece)
            except OSError:  # the client stopped reading
                return
            sent += len(piece)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-` / `bytes=a-b` / `bytes=-n` -> (start, end_exclusive), or None when not satisfiable."""
    spec = header.strip().removeprefix("bytes=").split(",")[0].strip()
    first, _, last = spec.partition("-")
    if not first:
        n = int(last)
        return (max(size - n, 0), size) if n > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return (start, end) if start < size and start < end else None
