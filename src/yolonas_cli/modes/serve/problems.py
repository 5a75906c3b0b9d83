"""The one error type of the server: an HTTP status with a one-line message, answered as JSON
`{"error": message, "status": status}`."""

from __future__ import annotations

from yolonas_cli.core.errors import one_line


class HTTPProblem(Exception):
    """A request the server refuses or cannot answer: `status` (4xx for the client's mistakes, 503 when busy)
    and a message naming the problem and the fix."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(one_line(message))
        self.status = status
        self.message = one_line(message)
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}
