"""An ordered, progress-reporting map over worker processes (the one place that owns the pool)."""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], num_workers: int, desc: str,
                total: int | None = None, unit: str = "file") -> Iterator[R]:
    """Yields fn(item) in input order, using `num_workers` processes (1 = in this process).

    Results come back in order whatever the worker timing, so outputs are deterministic.
    """
    items = list(items)
    bar = tqdm(total=total if total is not None else len(items), desc=desc, unit=unit,
               disable=None, mininterval=0.5, dynamic_ncols=True)
    try:
        if num_workers <= 1 or len(items) <= 1:
            for it in items:
                yield fn(it)
                bar.update()
            return
        # fork: workers inherit the imported modules, so they start in milliseconds.
        ctx = multiprocessing.get_context("fork")
        chunk = max(1, min(32, len(items) // (num_workers * 8)))
        with ctx.Pool(num_workers) as pool:
            for result in pool.imap(fn, items, chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()
