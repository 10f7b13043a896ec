"""heap.keep_freed_memory: blocks freed by a worker thread and by the main thread are reused by the next round
without page faults."""

import subprocess
import sys

import pytest

# A worker thread (as TensorFlow's pool threads) and then the main thread malloc, fill and free a training step's
# worth of blocks, round after round; the page faults of the later rounds show whether freed memory went back to
# the kernel.
ROUNDS = r"""
import ctypes, resource, sys, threading
from attnrnn_lib import heap
ok = heap.keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def one_round(sizes):
    blocks = [libc.malloc(n) for n in sizes]
    for p, n in zip(blocks, sizes):
        ctypes.memset(p, 1, n)
    for p in blocks:
        libc.free(p)
faults = []
def rounds(sizes):
    one_round(sizes); one_round(sizes)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(5):
        one_round(sizes)
    faults.append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 5)
# the pool threads' tensors: 106 MB in blocks of 1 to 20 MB
pool_sizes = [20 << 20] * 5 + [1 << 20, 2 << 20, 5 << 20]
t = threading.Thread(target=rounds, args=(pool_sizes,)); t.start(); t.join()
# and, from the main thread, a block over glibc's largest mmap threshold (32 MB): glibc maps such a block afresh
# each time unless its heap's free top happens to hold it; with mmap off, the heap always serves it
rounds([48 << 20])
print(ok, sum(faults), (sum(pool_sizes) + (48 << 20)) // 4096)
"""


def _faults_per_round(mode):
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    ok, faults, pages = out.stdout.split()
    return ok, float(faults), int(pages)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings exist on Linux only")
def test_freed_blocks_are_reused_without_page_faults():
    _, faults_default, pages = _faults_per_round("default")
    ok, faults_kept, _ = _faults_per_round("keep")
    if ok != "True":
        pytest.skip("the C library is not glibc (mallopt refused the settings)")
    # glibc's defaults hand the blocks back and fault every page in again; kept, they fault almost none.
    assert faults_default > 0.5 * pages
    assert faults_kept < 0.02 * pages


# More threads than cores, all holding a block at once: the distinct heaps their blocks come from are the arenas
# glibc gave them (thread heaps are 64 MB-aligned; the main arena's blocks lie elsewhere and count as one more).
ARENAS = r"""
import ctypes, sys, threading
from attnrnn_lib import heap, parallel
ok = heap.keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
n = parallel.usable_cores() + 4
barrier, addresses = threading.Barrier(n), []
def worker():
    barrier.wait()
    addresses.append(libc.malloc(1000))
    barrier.wait()                               # no thread exits (freeing its arena for another) before all have one
threads = [threading.Thread(target=worker) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(ok, len({a >> 26 for a in addresses}), parallel.usable_cores())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings exist on Linux only")
def test_threads_share_one_arena_per_core():
    def arenas(mode):
        out = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, check=True)
        ok, count, cores = out.stdout.split()
        return ok, int(count), int(cores)

    _, default, cores = arenas("default")
    ok, kept, _ = arenas("keep")
    if ok != "True":
        pytest.skip("the C library is not glibc (mallopt refused the settings)")
    assert default > cores                        # glibc's default: up to eight arenas per core
    assert kept <= cores
