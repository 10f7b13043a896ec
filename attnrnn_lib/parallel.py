"""How many cores this process may use, and an ordered, progress-reporting map over worker processes (the one
place that owns the pool)."""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _words(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """This process's container CPU quota in cores (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), or None."""
    v2 = _words(f"{root}/cpu.max")                                           # "max 100000" or "200000 100000"
    v1 = _words(f"{root}/cpu/cpu.cfs_quota_us") + _words(f"{root}/cpu/cpu.cfs_period_us")
    for words in (v2, v1):
        try:
            quota, period = float(words[0]), float(words[1])
        except (IndexError, ValueError):                 # no such file, or "max": no limit
            continue
        if quota > 0 and period > 0:                     # v1 writes -1 for no limit
            return quota / period
    return None


def usable_cores() -> int:
    """The CPU cores this process may use: its affinity, capped by its container's CPU quota (the default number
    of worker processes, and of pieces a CPU training step splits a batch into).

    A container held to 2 CPUs by a quota still shows all its host's CPUs to `os.cpu_count()` and to the affinity
    mask; work split for 64 cores would then queue on 2.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, int(limit)) if limit else cores)


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
