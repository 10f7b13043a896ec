"""Keeps freed training buffers in the C heap for the next step instead of handing them back to the kernel.

TensorFlow allocates CPU tensors with plain `malloc`. A training step allocates and frees about 2 GB of them
(the kernels' per-step arrays, padded gradients, the weight gradients' operands), most between 128 KB and 32 MB.
glibc serves blocks of that size with fresh `mmap` pages, or grows its heap for them and trims it again once the
free space at its top passes a threshold; either way the pages go back to the kernel when the step frees them,
and the next step takes a page fault (and a zeroed page) for every 4 KB it touches again. On a 2-core AMD EPYC
host that was 27 million faults in a 60-step run and a quarter of the CPU time spent in the kernel.

Raising glibc's mmap threshold to its largest allowed value, its trim threshold beyond any step's size, and the
room it keeps when a heap shrinks keeps those blocks in the heap, where the next step reuses them: half the
faults, half the system time, and 12-15 % more training throughput on that host. Blocks over that threshold
(32 MB: glibc allows no higher) were still mapped and unmapped each time, the other half of the faults, until
mmap was switched off altogether (a count of 0 blocks served by mmap): then under 2 % of the original faults
were left and training ran 10-28 % faster again, for about 0.1 GB more peak RSS (bench/RESULTS.md). What still
faults: blocks over 64 MB asked for by a thread other than the main one, which glibc maps whatever the settings
(no thread heap can hold them). Where TensorFlow turns its oneDNN operations on by itself (CPUs with AMX or
AVX512_BF16), a step faults far less to begin with (0.8 million faults in a 40-step run on a 2-core Xeon, 19 million
with those operations off) and the settings change little; they cost nothing measurable there either.

Call it before TensorFlow is imported, as `attention_rnn_train` does: called once TensorFlow had built the model
and its thread pools, it changed neither the fault count nor the speed.
"""

from __future__ import annotations

import ctypes
import sys

from attnrnn_lib.parallel import usable_cores

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# glibc's largest allowed mmap threshold on 64-bit systems (half its 64 MB per-thread heap size).
MMAP_THRESHOLD = 32 << 20
# Free space the heap keeps at its top before it gives memory back: more than a training step frees. mallopt takes
# an int, so 2 GiB is the most it can be.
TRIM_THRESHOLD = 2**31 - 1
# Spare room kept when a heap grows or shrinks. TensorFlow allocates from many threads, each with its own 64 MB
# heaps, and glibc unmaps a thread's heap as soon as it is empty unless this much room would be left: at 64 MB, never.
TOP_PAD = 64 << 20
# How many blocks may be served by mmap at once: none. A block over the threshold (XLA's per-call buffers, some of
# a step's gradients) then comes from a heap too, and stays there for the next step instead of being unmapped.
MMAP_MAX = 0


def arena_max() -> int:
    """Heaps (arenas) glibc may keep for the process's threads: one per core it may use, where glibc's default is
    eight per core. Each arena keeps what its threads freed, so with mmap off every extra arena can add to peak RSS
    (two instead of the default sixteen on 2 cores: up to 0.14 GB less, and no slower); threads contend for an
    arena only when they run at the same moment, which no more threads than cores can."""
    return usable_cores()


def keep_freed_memory() -> bool:
    """Sets glibc's mmap threshold and count, trim threshold, top pad and arena count (above) for this process;
    returns whether all took effect.

    A no-op returning False where the C library is not glibc (macOS, Windows, musl's `mallopt` accepts nothing).
    Memory freed by this process then stays mapped in it for reuse, at the cost of some peak RSS (about 0.1 GB
    for training on 2 cores).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt       # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_MMAP_MAX, MMAP_MAX), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (_M_TOP_PAD, TOP_PAD), (_M_ARENA_MAX, arena_max()))
    return all([mallopt(param, value) == 1 for param, value in settings])   # a list: every setting is tried
