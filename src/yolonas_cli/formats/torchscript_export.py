"""Torch -> TorchScript: a traced `DecodedModel`, the metadata as the extra file `metadata.json`.

The trace records shapes symbolically (sizes are read from the tensors), so one file runs at any batch
and any multiple-of-32 size; `dynamic=False` only makes the loader enforce the export size. NMS is not
offered in TorchScript (data-dependent loops do not trace); the backend's outputs go through the engine's
NMS, as the PyTorch model's do.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from yolonas_cli.core.files import atomic_file
from yolonas_cli.formats.metadata import metadata_json

if TYPE_CHECKING:
    from yolonas_cli.modes.export import ExportJob

METADATA_FILE = "metadata.json"


def export(job: ExportJob) -> Path:
    """format=torchscript: trace, embed the metadata, save atomically."""
    module = job.module(nms=False)
    with warnings.catch_warnings(), torch.no_grad(), atomic_file(job.output) as temp:
        warnings.simplefilter("ignore")  # torch.jit deprecation and tracer warnings
        traced = torch.jit.trace(module, job.sample(), check_trace=False)
        torch.jit.save(traced, str(temp), _extra_files={METADATA_FILE: metadata_json(job.meta)})
    return job.output
