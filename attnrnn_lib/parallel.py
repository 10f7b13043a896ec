"""How many cores this process may use, and an ordered, progress-reporting map over worker processes (the one
place that owns the pool)."""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import time
import traceback
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

    Results come back in order whatever the worker timing, so outputs are deterministic. An exception raised by
    `fn` in a worker is raised here, with the worker's traceback as its cause. Whenever the loop ends (finished,
    an error, Ctrl-C, or the caller stopping early) the workers are stopped and reaped before this returns.

    Raises:
      WorkerDied: a worker process ended without returning its results (killed, out of memory, a crash).
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
        chunk = max(1, min(32, len(items) // (num_workers * 8)))
        for result in _map_in_workers(fn, items, min(num_workers, len(items)), chunk):
            yield result
            bar.update()
    finally:
        bar.close()


class WorkerDied(RuntimeError):
    """A worker process of `ordered_map` ended without sending back its results."""


class _RemoteTraceback(Exception):
    """Carries a worker's formatted traceback, so the error raised here shows where in the worker it began."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


# Why not multiprocessing.Pool: its terminate() (run when a `with Pool` block is left early) can hang for ever.
# Its task thread may be part-way through writing a chunk larger than the pipe buffer to workers it has just
# killed. Here the parent alone talks to the workers (no helper threads), items reach the workers through fork
# instead of pipes, and a task message is three integers, so no write can block.
_JOBS: dict[int, tuple[Callable, list, list]] = {}      # token -> (fn, items, parent-side pipe ends), read at fork
_TOKENS = itertools.count()


def _serve(token: int, tasks, results) -> None:
    """A worker: runs fn over item ranges sent by the parent until told to stop or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # Ctrl-C reaches the whole group; the parent stops us
    fn, items, parent_ends = _JOBS[token]
    for conn in parent_ends:        # the parent's pipe ends, inherited: close them so a dead parent means EOF
        conn.close()
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        number, start, stop = task
        try:
            reply = (number, True, [fn(items[i]) for i in range(start, stop)])
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:                        # fn failed, or its result cannot be pickled
            try:                                      # some exceptions pickle but cannot be rebuilt
                data = pickle.dumps((number, False, (e, traceback.format_exc())))
                pickle.loads(data)
            except Exception:
                err = RuntimeError(f"{type(e).__name__}: {e} (the worker's exception could not be pickled)")
                data = pickle.dumps((number, False, (err, traceback.format_exc())))
        try:
            results.send_bytes(data)
        except OSError:                               # the parent has gone
            return


def _map_in_workers(fn: Callable[[T], R], items: list[T], num_workers: int, chunk: int) -> Iterator[R]:
    ctx = multiprocessing.get_context("fork")         # workers inherit imported modules and the items themselves
    token = next(_TOKENS)
    parent_ends: list = []
    _JOBS[token] = (fn, items, parent_ends)
    workers = []                                      # (process, task pipe, result pipe)
    stopped = False
    try:
        for _ in range(num_workers):
            task_r, task_w = ctx.Pipe(duplex=False)
            result_r, result_w = ctx.Pipe(duplex=False)
            parent_ends += [task_w, result_r]              # before the fork: the worker closes its copies
            proc = ctx.Process(target=_serve, args=(token, task_r, result_w), daemon=True)
            proc.start()
            task_r.close()
            result_w.close()
            workers.append((proc, task_w, result_r))
        del _JOBS[token]
        starts = range(0, len(items), chunk)
        window = 4 * num_workers            # chunks done or under way beyond the one awaited: bounds memory
        queued = {result_r: 0 for _, _, result_r in workers}   # chunks sent, not yet returned
        done: dict[int, list] = {}
        sent = 0

        def feed() -> None:
            nonlocal sent
            for proc, task_w, result_r in workers:
                # two per worker, so each has its next chunk waiting when it finishes one
                while queued[result_r] < 2 and sent < len(starts) and sent < awaited + window:
                    try:
                        task_w.send((sent, starts[sent], min(starts[sent] + chunk, len(items))))
                    except OSError:               # it died while the caller held a result: a broken pipe
                        raise _died(proc) from None
                    queued[result_r] += 1
                    sent += 1

        for awaited in range(len(starts)):
            feed()
            while awaited not in done:
                for conn in multiprocessing.connection.wait([conn for conn, n in queued.items() if n]):
                    try:
                        number, ok, payload = pickle.loads(conn.recv_bytes())
                    except (EOFError, OSError):
                        raise _died(next(w[0] for w in workers if w[2] is conn)) from None
                    queued[conn] -= 1
                    if not ok:
                        error, trace = payload
                        raise error from _RemoteTraceback(trace)
                    done[number] = payload
                    feed()
            if awaited == len(starts) - 1:        # all results are in: let the workers go before the last
                _stop(workers, gently=True)         # yield, which a caller such as zip() may never resume from
                stopped = True
            yield from done.pop(awaited)
    finally:
        _JOBS.pop(token, None)
        if not stopped:
            _stop(workers, gently=False)


def _died(proc) -> WorkerDied:
    """The error for a worker found gone (its pipe at EOF or broken), once its exit status can be read."""
    proc.join(5)
    return WorkerDied(_how_it_ended(proc.exitcode))


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
        if exitcode == -signal.SIGKILL:
            how += " (out of memory? fewer --num_workers use less)"
    else:
        how = f"ended with exit code {exitcode}"
    return f"a worker process {how} before returning its results"


def _stop(workers: list, gently: bool) -> None:
    """Ends and reaps the workers: asks them to exit after a full run, else terminates them at once."""
    for proc, task_w, _ in workers:
        try:
            if gently:
                task_w.send(None)
            else:
                proc.terminate()
        except OSError:                                 # already gone
            pass
    deadline = time.monotonic() + 5
    for proc, _, _ in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():                             # stuck, or ignored SIGTERM
            proc.kill()
            proc.join()
    for _, task_w, result_r in workers:
        task_w.close()
        result_r.close()
