"""`yolo-nas export model=... format=onnx|torchscript|openvino|engine ...`."""

from __future__ import annotations

from typing import Any


def run(args: Any) -> int:
    """Export `args.model` as `args` says (see `yolonas_cli.exporter`); 0 on success.

    The arguments and the installed packages are checked before the weights are loaded or downloaded."""
    from yolonas_cli.api import NAS
    from yolonas_cli.exporter import FORMATS, check_args, check_installed, export_model

    check_args(args, FORMATS[args.format])
    check_installed(FORMATS[args.format], args)
    export_model(NAS(args.model, weights_dir=args.weights_dir), args)
    return 0
