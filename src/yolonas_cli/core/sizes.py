"""Input sizes: the network stride and `imgsz` (an int N or an (h, w) pair) as one (h, w) pair."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import cast

STRIDE = 32  # the largest stride of the network: input sides are multiples of it
MAX_IMGSZ = 8192
"""The largest input side: the letterbox is an h x w x 3 OpenCV buffer and the network input 3 x h x w float32,
0.2 GB and 0.8 GB at 8192 (12.8 times the native 640), and the activations of YOLO-NAS S about 10 GB more;
at imgsz=100000 OpenCV fails to allocate the 30 GB buffer. Larger photos are still accepted as inputs: they
are resized to imgsz."""


def imgsz_pair(imgsz: int | Sequence[int]) -> tuple[int, int]:
    """`imgsz` as (h, w) of Python ints: an integer N (numpy's too) is (N, N), an (h, w) pair stays itself."""
    if isinstance(imgsz, numbers.Integral):
        return int(imgsz), int(imgsz)
    height, width = cast("Sequence[int]", imgsz)
    return int(height), int(width)


def round_up(value: int, multiple: int = STRIDE) -> int:
    """The smallest multiple of `multiple` that is >= `value`."""
    return -(-value // multiple) * multiple
