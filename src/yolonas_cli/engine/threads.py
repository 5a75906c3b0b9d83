"""Thread policy around the model: the small steps before and after it run on the calling thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import cv2
import torch


@contextmanager
def _one_thread(get_count: Callable[[], int], set_count: Callable[[int], None]) -> Iterator[None]:
    """Set a library's thread count to 1 for the enclosed calls, then restore it."""
    previous = get_count()
    set_count(1)
    try:
        yield
    finally:
        set_count(previous)


def single_opencv_thread() -> AbstractContextManager[None]:
    """Run the enclosed OpenCV calls on the calling thread.

    Letterboxing one photo takes well under a millisecond either way, but OpenCV's worker threads keep
    spinning after a parallel resize and take CPU time from the inference that follows (measured on 2 cores:
    S at 640 end to end 99-107 ms with OpenCV threads, 87 ms without; the model alone 85 ms)."""
    return _one_thread(cv2.getNumThreads, cv2.setNumThreads)


def single_torch_thread() -> AbstractContextManager[None]:
    """Run the enclosed torch ops on one intra-op thread."""
    return _one_thread(torch.get_num_threads, torch.set_num_threads)
