"""Batches of images that share one network input shape (the one shape-batching helper)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def shape_batches(items: Iterable[Item], size: int, shape_of: Callable[[Item], Hashable]) -> Iterator[list[Item]]:
    """Consecutive runs of `items` with the same `shape_of(item)`, at most `size` long, in order.

    A batch is yielded as soon as it is full or the next item has another shape, so at most `size` items are
    held at once (streams stay streams). Without `rect` every input has the same shape and the batches are
    simply `size` items each (the last one shorter)."""
    batch: list[Item] = []
    shape: Hashable = None
    for item in items:
        item_shape = shape_of(item)
        if batch and (len(batch) >= size or item_shape != shape):
            yield batch
            batch = []
        batch.append(item)
        shape = item_shape
    if batch:
        yield batch
