"""From `ServeArgs` to what the server runs: the extra it needs, the engine settings, the limits, what the
routes say about the model. Imports nothing of the extra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolonas_cli.cfg import ServeArgs
from yolonas_cli.core.errors import MissingExtraError
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.modes.serve.inputs import Limits

MIN_MAX_IMGSZ = 1280  # a request may ask for imgsz up to this, or up to the server's imgsz when larger


@dataclass(frozen=True)
class ServedModel:
    """What the routes say about the model and apply by default."""

    name: str  # the weights file name
    variant: str | None
    names: dict[int, str]
    defaults: EngineSettings
    limits: Limits
    batch: int
    max_wait_ms: float
    device: str


def require_serve_extra() -> Any:
    """Import the serve extra's packages (FastAPI, uvicorn, python-multipart, Pillow); returns uvicorn, or
    MissingExtraError naming the extra."""
    try:
        import fastapi  # noqa: F401
        import PIL  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingExtraError(
            f"{exc.name or 'a package'} is not installed (needed for yolo-nas serve): pip install 'yolo-nas[serve]'"
        ) from None
    return uvicorn


def server_settings(args: ServeArgs) -> EngineSettings:
    """The engine settings a request gets unless it asks otherwise."""
    return EngineSettings(
        imgsz=imgsz_pair(args.imgsz),
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        classes=tuple(args.classes) if args.classes is not None else None,
        batch=args.batch,
    )


def limits(args: ServeArgs) -> Limits:
    return Limits(
        max_body_bytes=int(args.max_body_mb * 1e6),
        max_pixels=args.max_pixels,
        timeout_s=args.timeout,
        max_imgsz=max(MIN_MAX_IMGSZ, *imgsz_pair(args.imgsz)),
    )


def served_model(model: Detector, args: ServeArgs, device: str) -> ServedModel:
    return ServedModel(
        name=model.path.name,
        variant=model.variant,
        names=model.names,
        defaults=server_settings(args),
        limits=limits(args),
        batch=args.batch,
        max_wait_ms=args.max_wait_ms,
        device=device,
    )
