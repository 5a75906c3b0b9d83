"""What a `POST /predict` may carry and how it is read, before any image is decoded.

- The body: raw image bytes (`Content-Type: image/*` or `application/octet-stream`), or `multipart/form-data`
  whose file parts are images (any field name) and whose text parts are settings. It is read into memory up
  to `Limits.max_body_bytes` (a larger `Content-Length` is refused before reading) within `Limits.timeout_s`;
  nothing touches the file system.
- The settings: `conf`, `iou`, `classes`, `max_det`, `imgsz` as query parameters or form fields, checked by
  the command line's own checks (`core.checks`) and turned into the engine settings of this request.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from yolonas_cli.core.checks import classes, did_you_mean, imgsz, integer, number
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.modes.serve.problems import HTTPProblem

SETTINGS = ("conf", "iou", "classes", "max_det", "imgsz")
RAW_TYPES = ("image/", "application/octet-stream")
MAX_IMAGES = 16  # images in one request
MAX_PARTS = 64  # parts of one multipart body
MAX_FIELD_BYTES = 1024  # a settings field


@dataclass(frozen=True)
class Limits:
    """What one request may cost."""

    max_body_bytes: int
    max_pixels: int
    timeout_s: float
    max_imgsz: int  # the largest side a request may ask for with imgsz=


@dataclass(frozen=True)
class Upload:
    """One image of a request: its name (the multipart file name, else image<i>) and its encoded bytes."""

    name: str
    data: bytes


async def read_body(chunks: AsyncIterator[bytes], content_length: str | None, limits: Limits) -> bytes:
    """The whole body, or HTTPProblem 413 (over the size limit) or 408 (not received in time)."""
    too_large = HTTPProblem(413, f"the request body is over the limit of {limits.max_body_bytes} bytes: send less")
    declared = content_length.strip() if content_length else ""
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_large
    deadline = time.monotonic() + limits.timeout_s
    parts: list[bytes] = []
    size = 0
    iterator = chunks.__aiter__()
    for _ in range(limits.max_body_bytes + 1):  # each chunk holds at least one byte, or ends the body
        remaining = deadline - time.monotonic()
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), timeout=max(remaining, 0.0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise HTTPProblem(408, f"the request body did not arrive within {limits.timeout_s:g} s") from None
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def split_body(content_type: str | None, body: bytes) -> tuple[list[Upload], dict[str, str]]:
    """(images, form fields) of a body of `content_type`; HTTPProblem for what cannot be one."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith(RAW_TYPES):
        if not body:
            raise HTTPProblem(400, "the request body is empty: send the image bytes")
        return [Upload("image0", body)], {}
    if kind == "multipart/form-data":
        return _multipart(content_type or "", body)
    shown = kind or "none"
    raise HTTPProblem(
        415,
        f"Content-Type {shown} is not accepted: send the image bytes as image/* or application/octet-stream, "
        "or a multipart/form-data upload",
    )


def _multipart(content_type: str, body: bytes) -> tuple[list[Upload], dict[str, str]]:
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPProblem(400, "the multipart Content-Type has no boundary")
    parts = _PartCollector()
    parser = MultipartParser(boundary, parts.callbacks(), max_size=len(body))  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except HTTPProblem:
        raise
    except Exception as exc:
        raise HTTPProblem(400, f"the multipart body cannot be read ({exc}): send a well-formed form upload") from None
    return parts.result()


class _PartCollector:
    """The parts of a multipart body in memory: file parts become Uploads, the others settings fields."""

    def __init__(self) -> None:
        self.uploads: list[Upload] = []
        self.fields: dict[str, str] = {}
        self.count = 0
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""
        self._data: list[bytes] = []

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add_header("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.append(bytes(data[start:end])),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self.count += 1
        if self.count > MAX_PARTS:
            raise HTTPProblem(413, f"the multipart body has more than {MAX_PARTS} parts")
        self._disposition, self._data = b"", []

    def _add_header(self, attribute: str, piece: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + piece)

    def _header_end(self) -> None:
        if self._header_field.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = self._header_value = b""

    def _end(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        data = b"".join(self._data)
        if b"filename" in options:
            if len(self.uploads) >= MAX_IMAGES:
                raise HTTPProblem(413, f"more than {MAX_IMAGES} images in one request: send them in several")
            filename = _safe_name(options[b"filename"].decode("utf-8", "replace"))
            self.uploads.append(Upload(filename or f"image{len(self.uploads)}", data))
        elif name:
            if len(data) > MAX_FIELD_BYTES:
                raise HTTPProblem(413, f"the form field {name!r} is over {MAX_FIELD_BYTES} bytes")
            self.fields[name] = data.decode("utf-8", "replace")

    def result(self) -> tuple[list[Upload], dict[str, str]]:
        if not self.uploads:
            raise HTTPProblem(400, "the multipart body has no file part: upload the image as a file field")
        return self.uploads, self.fields


def _safe_name(filename: str) -> str:
    """The last component of an uploaded file name, printable, at most 200 characters (it is only echoed)."""
    base = re.split(r"[\\/]", filename)[-1]
    return "".join(c for c in base if c.isprintable())[:200]


# ---------------------------------------------------------------------------------------- settings


def request_settings(defaults: EngineSettings, query: Mapping[str, str], fields: Mapping[str, str], limits: Limits):
    """The engine settings of one request: the server's, with the request's conf, iou, classes, max_det and
    imgsz (query parameters or form fields). HTTPProblem 422 for an unknown name or a bad value."""
    given = dict(query)
    for key, value in fields.items():
        if key in given:
            raise HTTPProblem(422, f"{key} is given both in the query and in the form: give it once")
        given[key] = value
    changes: dict[str, Any] = {}
    for key, text in given.items():
        if key not in SETTINGS:
            hint = did_you_mean(key, SETTINGS) or f" Use {', '.join(SETTINGS)}."
            raise HTTPProblem(422, f"'{key}' is not a setting of /predict.{hint}")
        try:
            changes[key] = _checked(key, text, limits)
        except UsageError as exc:
            raise HTTPProblem(422, str(exc)) from None
    if "classes" in changes:
        changes["classes"] = tuple(changes["classes"]) if changes["classes"] is not None else None
    if "imgsz" in changes:
        changes["imgsz"] = imgsz_pair(changes["imgsz"])
    return replace(defaults, **changes)


def _checked(key: str, text: str, limits: Limits) -> Any:
    value = _literal(text)
    if key in ("conf", "iou"):
        return number(0, 1)(key, value)
    if key == "max_det":
        return integer(1)(key, value)
    if key == "classes":
        return classes(key, value)
    size = imgsz(key, value)
    if max(imgsz_pair(size)) > limits.max_imgsz:
        raise UsageError(f"imgsz={text} is over the limit of {limits.max_imgsz}: ask for a smaller size")
    return size


def _literal(text: str) -> Any:
    """A settings value as typed: a number, none, or numbers separated by commas (brackets optional)."""
    cleaned = text.strip()
    if cleaned.lower() in ("none", "null"):
        return None
    inner = cleaned.strip("[]()")
    if "," in inner or cleaned.startswith("["):
        return [_number(part) for part in inner.split(",") if part.strip()]
    return _number(cleaned)


def _number(text: str) -> Any:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
