"""Keep freed memory in the process instead of handing it back to the kernel (glibc's malloc).

Every update allocates the same large tensors again (the learning pass's input projection,
saved gates and states, their gradients: 15.7 MB each at 1024 environments, H=48). torch's CPU
allocator does not cache them, and glibc returns them to the kernel when they are freed: blocks
above its mmap threshold (raised on the fly, at most 32 MiB) are unmapped, and a heap whose free
top grows past twice that threshold is trimmed. The next update then pays a page fault for each
4 KiB page it writes, 2.9 us apiece on the CI machine. Measured there (two_step, one thread,
updates of 20 steps): 1024 environments, 5.3k-8.6k faults and 140-155 ms per update before,
0.2k-0.4k and 107-119 ms after; 256 environments, 1.4k-1.8k and 40-43 ms before, under 0.1k
and 37-39 ms after; 32 environments (the default) faulted in neither case.

So the agent's commands fix the mmap threshold at glibc's maximum (blocks up to 32 MiB come
from the heap and are reused) and set the trim threshold to 2 GiB (the heap is not shrunk while
it is in use). The process then keeps its peak heap until it exits, as a caching allocator
would. This is a setting of the application, not of the fastrnn library, which leaves the
process's allocator alone. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: mallopt refuses more
TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int


def retain_freed_memory() -> bool:
    """Set the two thresholds above; True where glibc took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
