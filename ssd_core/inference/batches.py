"""Feeding a predictor from files: decode ahead in threads, in order, in batches.

Decoding (Pillow) and resizing (OpenCV) release the GIL, so a few threads keep the model busy;
`load_ahead` bounds how many images are decoded ahead, so a dataset of any size is never held
in memory at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def load_ahead(
    load: Callable[[T], R], items: Sequence[T], workers: int = 2, ahead: int = 16
) -> Iterator[Future[R]]:
    """`load(item)` for every item in threads, at most `ahead` beyond the one consumed; yields
    the futures in the order of `items` (`result()` returns the value or raises its error)."""
    with ThreadPoolExecutor(workers, thread_name_prefix="load") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(load, item))
            if len(pending) > ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
