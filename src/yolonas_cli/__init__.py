"""yolo-nas: run the YOLO-NAS object detectors exactly, fast and safely, without SuperGradients."""

from __future__ import annotations

from yolonas_cli.core.cpus import apply_thread_environment
from yolonas_cli.core.version import __version__

# First, before any module of the package can import torch or OpenCV: their thread pools read these variables
# once, when they load (idle workers sleep instead of spinning; a CPU quota caps OpenMP's threads). Variables
# already set are kept. See core/cpus.py.
apply_thread_environment()

__all__ = ["NAS", "__version__", "sg_evaluate"]


def __getattr__(name: str):
    # Lazy so that `import yolonas_cli` stays light (no torch until the model is needed).
    if name == "NAS":
        from yolonas_cli.api import NAS

        return NAS
    if name == "sg_evaluate":
        from yolonas_cli.metrics.sg import sg_evaluate

        return sg_evaluate
    raise AttributeError(f"module 'yolonas_cli' has no attribute {name!r}")
