"""Items of an iterator produced on a helper thread ahead of use: for readers whose work (gunzip, Parquet
decoding) releases the GIL, so that reading overlaps with what the caller does with each item."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def read_ahead(items: Iterator[T], depth: int = 2, name: str = "read-ahead") -> Iterator[T]:
    """The items of ``items`` in order, up to ``depth`` of them produced ahead by one helper thread (one
    thread: the iterator is never advanced twice at once). None ends the stream, so it cannot be an item.
    An exception raised by ``items`` is raised here, at the item it replaced. Close the returned generator
    (``contextlib.closing``) when stopping early: pending items are waited for, not left running."""
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        pending = deque(pool.submit(next, items, None) for _ in range(depth))
        try:
            while (item := pending.popleft().result()) is not None:
                pending.append(pool.submit(next, items, None))
                yield item
        finally:
            for fut in pending:  # let queued reads finish before the caller closes what they read
                fut.cancel() or fut.exception()
