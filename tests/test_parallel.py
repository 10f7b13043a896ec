"""How many cores the work is split over: the affinity mask capped by a container's CPU quota."""

import os

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
