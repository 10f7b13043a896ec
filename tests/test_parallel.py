"""How many cores the work is split over: the affinity mask capped by a container's CPU quota."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from attnrnn_lib import parallel


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "200000 100000\n"}, 2.0),                                      # cgroup v2, held to 2 CPUs
    ({"cpu.max": "max 100000\n"}, None),                                        # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),   # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),      # v1, no limit
    ({"cpu.max": "max 100000\n", "cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
    ({}, None),                                                                 # no cgroup files at all
])
def test_container_cpu_quota_is_read_from_cgroup_files(tmp_path, files, expected):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert parallel.cgroup_cpu_limit(str(tmp_path)) == expected


def test_usable_cores_never_exceed_the_affinity_mask_or_the_quota():
    cores = parallel.usable_cores()
    affinity = len(os.sched_getaffinity(0))
    limit = parallel.cgroup_cpu_limit()
    assert 1 <= cores <= affinity
    assert cores == (max(1, min(affinity, int(limit))) if limit else affinity)


def pid_and_square(i):
    return os.getpid(), i * i


def test_ordered_map_returns_results_in_input_order_across_processes():
    results = list(parallel.ordered_map(pid_and_square, range(64), 2, desc="test"))
    assert [r[1] for r in results] == [i * i for i in range(64)]
    assert os.getpid() not in {r[0] for r in results}        # the work ran in worker processes


def fail_on_seven(i):
    if i == 7:
        raise ValueError(f"item {i} is bad")
    return i


def die_on_five(i):
    if i == 5:
        os._exit(3)                                          # as if killed: no result, no exception
    return i


def sleep_on_zero_die_on_one(i):
    if i == 0:
        time.sleep(1)                   # the other worker meanwhile takes every chunk the window allows
    elif i == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def length(blob):
    return len(blob), blob[:3]


def pid_is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has ended all the same
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_workers_exception_is_raised_in_the_caller_with_the_workers_traceback():
    with pytest.raises(ValueError, match="item 7 is bad") as info:
        list(parallel.ordered_map(fail_on_seven, range(40), 2, desc="test"))
    assert "fail_on_seven" in str(info.value.__cause__)       # where in the worker it began
    assert not multiprocessing.active_children()


def test_a_worker_that_dies_is_reported_not_waited_for():
    with pytest.raises(parallel.WorkerDied, match="ended with exit code 3"):
        list(parallel.ordered_map(die_on_five, range(40), 2, desc="test"))
    assert not multiprocessing.active_children()


def test_a_worker_that_dies_while_the_caller_holds_a_result_is_reported():
    """Here the death is found by sending the dead worker its next chunk (a broken pipe), not by awaiting it."""
    results = parallel.ordered_map(sleep_on_zero_die_on_one, range(16), 2, desc="test")   # chunks of one item
    assert next(results) == 0
    time.sleep(1)                       # the caller busy with item 0: worker 0 is killed on item 1
    with pytest.raises(parallel.WorkerDied, match="was killed by SIGKILL"):
        next(results)
    assert not multiprocessing.active_children()


def test_stopping_early_with_large_items_in_flight_reaps_every_worker_each_time():
    """Items and results far larger than a pipe's buffer, and the caller stops reading at once, forty times:
    the case in which multiprocessing.Pool's terminate() could hang."""
    blobs = [bytes([i]) * 300_000 for i in range(64)]
    for attempt in range(40):
        results = parallel.ordered_map(length, blobs, 2, desc="test")
        for k, (n, head) in enumerate(results):
            assert (n, head) == (300_000, bytes([k]) * 3)
            if k == attempt % 5:
                break
        results.close()
        assert not multiprocessing.active_children()
    assert [n for n, _ in parallel.ordered_map(length, blobs, 2, desc="test")] == [300_000] * 64


_SLOW_MAP = """
import os, sys, time
from attnrnn_lib import parallel
def slow_pid(i):
    time.sleep(0.05)
    return os.getpid()
for pid in parallel.ordered_map(slow_pid, range(10_000), 2, desc="slow"):
    print(pid, flush=True)
"""


def _start_slow_map():
    """A process mapping slowly over worker processes; returns it and its two workers' pids."""
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_MAP], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    pids = set()
    while len(pids) < 2:
        pids.add(int(proc.stdout.readline()))
    return proc, pids


def _wait_until_gone(pids, seconds=10):
    deadline = time.monotonic() + seconds
    while any(pid_is_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if pid_is_running(p)]


def test_ctrl_c_stops_the_map_and_its_workers_at_once():
    proc, pids = _start_slow_map()
    os.killpg(proc.pid, signal.SIGINT)                        # what a terminal sends the whole foreground group
    proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert _wait_until_gone(pids) == []


def test_workers_of_a_killed_process_exit_by_themselves():
    proc, pids = _start_slow_map()
    proc.kill()                                               # SIGKILL: the parent cleans up nothing
    proc.communicate(timeout=20)
    assert _wait_until_gone(pids) == []                       # no orphans left computing for no one
