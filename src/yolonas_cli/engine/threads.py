"""Thread counts of the libraries around the model, set once, never per batch (see `core.cpus` for the policy:
as many threads as the CPUs this process may use, idle threads asleep)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import torch

from yolonas_cli.core.cpus import cpu_budget


def cap_torch_threads() -> int:
    """At most `cpu_budget()` torch intra-op threads; returns the count in use.

    A no-op when torch was imported after `yolonas_cli` (OpenMP then starts with the budget already) or when
    `OMP_NUM_THREADS` says otherwise; it matters when a program imported torch first in a container whose CPU
    quota is smaller than its affinity mask. Idempotent, so backends built from several threads agree."""
    budget = cpu_budget()
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > budget:
        torch.set_num_threads(budget)
    return torch.get_num_threads()


@contextmanager
def single_opencv_thread() -> Iterator[None]:
    """OpenCV on the calling thread for the enclosed calls, then its previous thread count.

    Process-wide and not thread-safe: only for moments with one OpenCV user, such as forking data-loader
    workers (`modes.train.data`); inference never toggles it."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)
