"""`yolo-nas serve`: detections over HTTP, from one process with dynamic batching (`server`), or as a Ray Serve
deployment of `replicas` copies (`on_ray`, with `ray=`). The routes are in `app`, request reading in `inputs`
and `images`, batching in `batcher`.

    yolo-nas serve model=yolo_nas_s.pt host=127.0.0.1 port=8000 batch=8 max_wait_ms=5
    curl -F file=@bus.jpg 'http://127.0.0.1:8000/predict?conf=0.4'
"""

from __future__ import annotations

from yolonas_cli.cfg import ServeArgs


def run(args: ServeArgs) -> int:
    """Serve until stopped (Ctrl-C or SIGTERM: graceful); returns the exit code."""
    from yolonas_cli.modes.serve.settings import require_serve_extra

    require_serve_extra()
    if args.ray is not None:
        from yolonas_cli.modes.serve.on_ray import serve_on_ray

        return serve_on_ray(args)
    from yolonas_cli.modes.serve.server import serve_locally

    return serve_locally(args)
