"""`yolo-nas predict`: detect objects in images, videos and streams, save and print the results."""

from __future__ import annotations

from yolonas_cli.cfg import PredictArgs


def run(args: PredictArgs) -> int:
    """Run predict over the whole source; outputs are written as the results stream by."""
    from yolonas_cli.api import NAS
    from yolonas_cli.predictor import predict_stream

    nas = NAS(args.model, weights_dir=args.weights_dir)
    for _ in predict_stream(nas, args):
        pass
    return 0
