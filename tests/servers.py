"""`yolo-nas serve` in a child process for tests, and a small HTTP client (standard library only).

    with running_server("model=x.pth", "port=0") as server:
        status, headers, body = post(server.url + "/predict", data, "image/jpeg")

`running_server` waits (bounded) for the "serving ... on http://host:port" line, and at the end sends SIGTERM
and checks that the server stopped gracefully (exit code 0) within the time given.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

READY = re.compile(r"serving .* on (http://[^ ]+)")
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@dataclass
class Server:
    """A running server: its process, base URL and what it printed so far (`lines`, read by a thread)."""

    process: subprocess.Popen
    url: str = ""
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)


def start_server(*tokens: str, timeout: float = 180.0, env: dict[str, str] | None = None) -> Server:
    """`python -m yolonas_cli serve TOKENS` with this checkout's package; returns once it serves."""
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join([SRC, child_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    process = subprocess.Popen(
        [sys.executable, "-m", "yolonas_cli", "serve", *tokens],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env,
    )
    server = Server(process)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line)
            match = READY.search(line)
            if match and not server.url:
                server.url = match.group(1).rstrip(".,;")
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not server.url:
        process.kill()
        process.wait(30)
        raise AssertionError(f"the server did not start within {timeout} s:\n{server.output()[-3000:]}")
    return server


def stop_server(server: Server, timeout: float = 60.0) -> int:
    """SIGTERM, then the exit code (killed and failed when it does not stop within `timeout`)."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(30)
        raise AssertionError(f"the server did not stop within {timeout} s:\n{server.output()[-3000:]}") from None


@contextmanager
def running_server(*tokens: str, timeout: float = 180.0, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = start_server(*tokens, timeout=timeout, env=env)
    try:
        yield server
    finally:
        code = stop_server(server)
    assert code == 0, server.output()[-3000:]
    assert "stopped" in server.output()


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers with lower-case names, parsed JSON body or None)."""
    parts = urlsplit(url)
    conn = connection or http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        parsed = json.loads(data) if data and "json" in (response.getheader("content-type") or "") else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        if connection is None:
            conn.close()


def post(url: str, body: bytes, content_type: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    return request(url, "POST", body, {"Content-Type": content_type}, **kwargs)


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with `files` as ("file", name, bytes) parts and text `fields`; returns
    (body, content type)."""
    boundary = f"yolonas{time.monotonic_ns()}"
    parts = []
    for key, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    for name, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
