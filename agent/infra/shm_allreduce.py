"""The gradients' sum all-reduce through shared memory, for ranks that share one host's memory.

Why not gloo: on the 2-core VM this project is measured on, a gloo all-reduce takes 1.2-1.5 ms
whatever its size (40 or 40,000 floats; a send/recv ping-pong 0.5 ms, against 20 us for a TCP
round trip between two processes): each message crosses gloo's I/O thread, and every
hand-over between threads is a wake-up on a shared core. One all-reduce an update is a quarter
of a two_step update, and two torchrun ranks ran at 0.89x of one process where two independent
processes, talking to nobody, run at 0.60x. Here a rank writes its buffer into a shared
mapping, publishes a counter, and waits (spinning, then yielding) for the other ranks'
counters: no thread, no system call on the fast path.

Correctness rests on x86-64's memory order (stores become visible in program order, loads are
not reordered with older loads): a rank's data store precedes its counter store, and a reader
reads the counter before the data, so a published counter means published data. Other
architectures keep gloo (`eligible`). Every rank adds the slots in rank order, so every rank
holds the same bits, and for two ranks the same bits as gloo's sum (a + b == b + a in IEEE).

Two buffers alternate by generation: a rank can run at most one all-reduce ahead of the slowest
(it waits for every counter to reach its own), so while it writes generation g + 1 the others may
still read generation g, from the other buffer.

The mapping is a file in /dev/shm that rank 0 creates and unlinks as soon as every rank has it
open: nothing is left behind, even after a crash. Where it cannot be made (no room), the ranks
sum through gloo, with a warning."""

from __future__ import annotations

import mmap
import os
import platform
import secrets
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist

COUNTER_STRIDE = 8  # int64s between two ranks' counters: one 64-byte cache line each
SPIN_SECONDS = 200e-6  # pure spinning before each wait also yields the core
TIMEOUT_SECONDS = 1800.0  # gloo's default collective timeout
ALL_REDUCE_VARIABLE = "FASTRNN_ALLREDUCE"  # "shm" (the default where eligible) or "gloo"
ALL_REDUCES = ("shm", "gloo")


def eligible(device: str) -> str | None:
    """None when the gradients can be reduced through shared memory here, else why not.
    Raises ValueError for a FASTRNN_ALLREDUCE it does not know (process_group calls it first)."""
    chosen = os.environ.get(ALL_REDUCE_VARIABLE, "shm").strip().lower() or "shm"
    if chosen not in ALL_REDUCES:
        raise ValueError(f"{ALL_REDUCE_VARIABLE}: expected one of {', '.join(ALL_REDUCES)}, got {chosen!r}")
    if chosen == "gloo":
        return f"{ALL_REDUCE_VARIABLE}=gloo"
    if torch.device(device).type != "cpu":
        return "the gradients are on a GPU (NCCL reduces them)"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"{platform.machine()} is not x86-64 (the counters rely on its store order)"
    if os.environ.get("LOCAL_WORLD_SIZE") != os.environ.get("WORLD_SIZE"):
        return "the ranks span several hosts"
    return None


def _shared_folder() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def _create(size: int) -> list:
    """[path, None] of a fresh zero-filled file of `size` bytes, or [None, why not]. The blocks are
    allocated now: a full /dev/shm (64 MiB in a default Docker container) then fails here, where
    gloo can take over, instead of killing a rank with SIGBUS at its first write."""
    path = os.path.join(_shared_folder(), f"fastrnn-allreduce-{os.getpid()}-{secrets.token_hex(6)}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except OSError as error:
        return [None, f"cannot create {path}: {error.strerror}"]
    try:
        os.posix_fallocate(fd, 0, size)  # zero-filled: every counter starts at generation 0
    except OSError as error:
        os.unlink(path)
        return [None, f"{size} bytes in {os.path.dirname(path)}: {error.strerror}"]
    finally:
        os.close(fd)
    return [path, None]


class SharedMemoryAllReduce:
    """sum_all_reduce(flat): flat becomes the sum over the ranks (in place), like
    dist.all_reduce(flat). Collective: every rank calls it, in the same order, with tensors of
    one numel and dtype; the mapping is made at the first call (and again if those change)."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size
        self.generation = 0
        self._key: tuple[int, torch.dtype] | None = None
        self._map: mmap.mmap | None = None
        self.unavailable: str | None = None  # why the last mapping could not be made (gloo sums instead)

    @property
    def name(self) -> str:
        """What summed the last call: "shared memory", or "gloo" where no mapping could be made."""
        return "gloo" if self.unavailable else "shared memory"

    def __call__(self, flat: torch.Tensor) -> None:
        if flat.device.type != "cpu" or not flat.is_contiguous():
            raise ValueError("SharedMemoryAllReduce: flat must be a contiguous CPU tensor")
        if self._key != (flat.numel(), flat.dtype):
            self._open(flat.numel(), flat.dtype)
        if self.unavailable:
            dist.all_reduce(flat)
            return
        self.generation += 1
        slots = self._slots[self.generation % 2]
        slots[self.rank].copy_(flat)
        self._counters[self.rank] = self.generation  # after the data: publishes it (module docstring)
        self._wait_for(self.generation)
        if self.world_size == 1:
            flat.copy_(slots[0])
            return
        torch.add(slots[0], slots[1], out=flat)  # one pass for the first two ranks, not a copy and an add
        for other in range(2, self.world_size):
            flat.add_(slots[other])

    def _wait_for(self, generation: int) -> None:
        counters = self._counters
        if counters.min() >= generation:
            return
        began = time.perf_counter()
        while counters.min() < generation:
            waited = time.perf_counter() - began
            if waited > SPIN_SECONDS:
                os.sched_yield()  # a rank that waits long may share its core with the one it waits for
                if waited > TIMEOUT_SECONDS:
                    missing = [r for r in range(self.world_size) if counters[r] < generation]
                    raise RuntimeError(f"shared-memory all-reduce {generation}: ranks {missing} did not arrive "
                                       f"in {TIMEOUT_SECONDS:g} s")

    def _open(self, numel: int, dtype: torch.dtype) -> None:
        """Map a fresh file of 2 x world_size slots of numel elements after the counters (collective)."""
        self.close()
        header = self.world_size * COUNTER_STRIDE * 8
        slot_bytes = numel * torch.empty(0, dtype=dtype).element_size()
        size = header + 2 * self.world_size * slot_bytes
        made = [None, None]  # rank 0's (path, why not)
        if self.rank == 0:
            made = _create(size)
        dist.broadcast_object_list(made, src=0)
        path, self.unavailable = made
        self._key = (numel, dtype)
        if self.unavailable:
            if self.rank == 0:
                warnings.warn(f"shared-memory all-reduce unavailable ({self.unavailable}); the ranks sum through gloo",
                              RuntimeWarning, stacklevel=3)
            return
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        dist.barrier()  # every rank has it mapped: the name can go
        if self.rank == 0:
            os.unlink(path)
        self._counters = np.frombuffer(self._map, dtype=np.int64, count=self.world_size * COUNTER_STRIDE)[::COUNTER_STRIDE]
        data = torch.frombuffer(self._map, dtype=dtype, offset=header, count=2 * self.world_size * numel)
        self._slots = data.view(2, self.world_size, numel)
        self.generation = 0

    def close(self) -> None:
        if self._map is not None:
            self._counters = self._slots = None  # views of the mapping: released before it closes
            self._map.close()
            self._map, self._key = None, None
