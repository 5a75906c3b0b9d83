"""`yolo-nas info model=...`: variant, classes, input size, layers, parameters, GFLOPs, file and licence."""

from __future__ import annotations

from typing import Any


def run(args: Any) -> int:
    """Print the model facts for `args.model` at `args.imgsz`."""
    from yolonas_cli.api import NAS

    NAS(args.model, weights_dir=args.weights_dir).info(imgsz=args.imgsz, verbose=True)
    return 0
