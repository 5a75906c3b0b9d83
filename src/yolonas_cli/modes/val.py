"""`yolo-nas val`: measure a model's COCO mAP on a dataset YAML (see `yolonas_cli.validator`)."""

from __future__ import annotations

from yolonas_cli.cfg import ValArgs


def run(args: ValArgs) -> int:
    """Load `args.model`, validate it on `args.data`, print the table; exit code 0."""
    from yolonas_cli.api import NAS
    from yolonas_cli.validator import validate

    validate(NAS(args.model, weights_dir=args.weights_dir), args)
    return 0
