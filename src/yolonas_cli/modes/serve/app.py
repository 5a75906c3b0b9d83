"""The HTTP API of `yolo-nas serve` (FastAPI): `POST /predict`, `GET /health`, `GET /info`, the OpenAPI schema
(`/openapi.json`, browsable at `/docs`).

`POST /predict` answers a JSON list with one entry per uploaded image, in the schema of predict's
predictions.json: `{path, height, width, detections: [{box: [x1, y1, x2, y2] (pixels), confidence, class,
name}]}` (`path` is the uploaded file name, or image0 for a raw body). Headers: `X-Batch-Size` (the most
images one of its model calls ran: above 1 when requests were batched together) and `X-Inference-Ms`.

Every refusal is a JSON `{"error": ..., "status": ...}` with a 4xx status (503 when busy), and the server
keeps serving. The routes run any `Service`: the local dynamic batcher or a Ray Serve replica.

This module imports FastAPI: import it after `settings.require_serve_extra()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from yolonas_cli.core import console
from yolonas_cli.core.version import __version__
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sinks import json_entry
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.modes.serve.batcher import Detection
from yolonas_cli.modes.serve.images import decode_upload
from yolonas_cli.modes.serve.inputs import Upload, read_body, request_settings, split_body
from yolonas_cli.modes.serve.problems import HTTPProblem
from yolonas_cli.modes.serve.settings import ServedModel


class Service(Protocol):
    """What runs the model behind the routes."""

    async def detect(self, image: np.ndarray, settings: EngineSettings, timeout_s: float) -> Detection: ...

    def stats(self) -> dict[str, Any]: ...


_SETTING_HELP = {
    "conf": "confidence threshold, 0-1 (default: the server's conf=)",
    "iou": "IoU threshold of NMS, 0-1",
    "classes": "keep only these class ids, e.g. 0 or 0,2",
    "max_det": "most detections per image",
    "imgsz": "input size N or h,w (rounded up to a multiple of 32)",
}
_PARAMETERS = [
    {"name": key, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
    for key, text in _SETTING_HELP.items()
]
_REQUEST_BODY = {
    "required": True,
    "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "one or more image files"},
                    **{key: {"type": "string", "description": text} for key, text in _SETTING_HELP.items()},
                },
                "required": ["file"],
            }
        },
    },
}
_ENTRY_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "height": {"type": "integer"},
            "width": {"type": "integer"},
            "detections": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                        "confidence": {"type": "number"},
                        "class": {"type": "integer"},
                        "name": {"type": "string"},
                    },
                },
            },
        },
    },
}


def create_app(service: Service, served: ServedModel, lifespan: Callable[[Any], Any] | None = None) -> FastAPI:
    """The FastAPI application serving `service` (see the module docstring)."""
    app = FastAPI(
        title="yolo-nas",
        version=__version__,
        description="YOLO-NAS object detection. POST an image to /predict.",
        lifespan=lifespan,
    )

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "status": exc.status_code}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {exc.errors()}", "status": 422}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:  # nobody reads the answer
        return JSONResponse({"error": "the client went away", "status": 400}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        console.error(f"internal error answering {request.url.path}: {type(exc).__name__}: {exc}")
        message = f"internal error: {type(exc).__name__}"
        return JSONResponse({"error": message, "status": 500}, status_code=500)

    @app.get("/health", summary="Liveness: 200 while the server answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", summary="The model, its defaults, the limits and the batching so far")
    async def info() -> dict[str, Any]:
        return describe(served, service.stats())

    @app.post(
        "/predict",
        summary="Detect objects in one or more images",
        openapi_extra={"requestBody": _REQUEST_BODY, "parameters": _PARAMETERS},
        responses={
            200: {"description": "one entry per image", "content": {"application/json": {"schema": _ENTRY_SCHEMA}}},
            **{code: {"description": text} for code, text in _ERRORS.items()},
        },
    )
    async def predict(request: Request) -> JSONResponse:
        started = time.monotonic()
        limits = served.limits
        body = await read_body(request.stream(), request.headers.get("content-length"), limits)
        uploads, fields = split_body(request.headers.get("content-type"), body)
        settings = request_settings(served.defaults, dict(request.query_params), fields, limits)
        images = await run_in_threadpool(_decode_all, uploads, limits.max_pixels)
        remaining = max(limits.timeout_s - (time.monotonic() - started), 0.001)
        outcomes = await asyncio.gather(*(service.detect(image, settings, remaining) for image in images))
        entries = [_entry(u.name, image, o, served.names) for u, image, o in zip(uploads, images, outcomes)]
        headers = {
            "X-Batch-Size": str(max(o.batch_size for o in outcomes)),
            "X-Inference-Ms": f"{sum(o.speed.get('inference', 0.0) for o in outcomes):.2f}",
        }
        return JSONResponse(entries, headers=headers)

    return app


_ERRORS = {
    400: "empty or malformed body",
    408: "the body did not arrive in time",
    413: "body, image or image count over the limits",
    415: "not an image, or a content type that is not accepted",
    422: "a truncated or undecodable image, or a bad setting",
    503: "busy, shutting down, or no answer in time (retry)",
}


def _decode_all(uploads: list[Upload], max_pixels: int) -> list[np.ndarray]:
    return [decode_upload(upload.data, upload.name, max_pixels) for upload in uploads]


def _entry(name: str, image: np.ndarray, outcome: Detection, names: dict[int, str]) -> dict[str, Any]:
    hw = (int(image.shape[0]), int(image.shape[1]))
    result = Result(Boxes(outcome.detections, hw), names, None, hw, name, outcome.speed, outcome.input_hw)
    return json_entry(result)


def describe(served: ServedModel, stats: dict[str, Any]) -> dict[str, Any]:
    """What `GET /info` answers."""
    d = served.defaults
    return {
        "model": served.name,
        "variant": served.variant,
        "version": __version__,
        "device": served.device,
        "classes": {str(k): v for k, v in served.names.items()},
        "defaults": {
            "imgsz": list(d.imgsz),
            "conf": d.conf,
            "iou": d.iou,
            "max_det": d.max_det,
            "classes": list(d.classes) if d.classes is not None else None,
        },
        "limits": {
            "max_body_bytes": served.limits.max_body_bytes,
            "max_pixels": served.limits.max_pixels,
            "timeout_s": served.limits.timeout_s,
            "max_imgsz": served.limits.max_imgsz,
        },
        "batching": {"batch": served.batch, "max_wait_ms": served.max_wait_ms, **stats},
    }
