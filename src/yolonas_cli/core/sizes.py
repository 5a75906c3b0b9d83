"""Input sizes: the network stride and `imgsz` (an int N or an (h, w) pair) as one (h, w) pair."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import cast

STRIDE = 32  # the largest stride of the network: input sides are multiples of it


def imgsz_pair(imgsz: int | Sequence[int]) -> tuple[int, int]:
    """`imgsz` as (h, w) of Python ints: an integer N (numpy's too) is (N, N), an (h, w) pair stays itself."""
    if isinstance(imgsz, numbers.Integral):
        return int(imgsz), int(imgsz)
    height, width = cast("Sequence[int]", imgsz)
    return int(height), int(width)


def round_up(value: int, multiple: int = STRIDE) -> int:
    """The smallest multiple of `multiple` that is >= `value`."""
    return -(-value // multiple) * multiple
