"""Data-parallel training on torch.distributed, launched by torchrun (docs/design.md: no process pool
of our own for gradients).

Every rank runs its own environments (task and sampler seeds offset by rank; rank 0's equal a
single-process run's) on identical weights (the same torch.manual_seed before initialization),
and the gradients are averaged across ranks each update in one flat all-reduce, so every rank
takes the same optimizer step and the weights stay equal without a broadcast. Without torchrun's
environment variables nothing here starts a process group and training is the single-process
code path, unchanged.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.distributed as dist

from agent.infra.shm_allreduce import SharedMemoryAllReduce, eligible

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
# Rank r's task and sampler seeds are rank 0's plus r times this: a large prime, so that the
# streams of (seed, rank) pairs meet another run's only for seeds this far apart.
RANK_SEED_STRIDE = 10_000_019


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    distributed: bool = False  # a process group is up (launched by torchrun), even with size 1
    # The gradients' all-reduce through shared memory (shm_allreduce.py), or None: the group's own.
    shared_memory: SharedMemoryAllReduce | None = field(default=None, compare=False, repr=False)

    @property
    def first(self) -> bool:
        """Rank 0: the one that writes the run directory."""
        return self.rank == 0

    @property
    def all_reduce_name(self) -> str:
        if self.shared_memory is not None:
            return self.shared_memory.name
        return dist.get_backend() if self.distributed else "none"

    def sum_all_reduce(self, flat: torch.Tensor) -> None:
        """flat becomes its sum over the ranks, in place (collective)."""
        if self.shared_memory is not None:
            self.shared_memory(flat)
        else:
            dist.all_reduce(flat)


SINGLE = World()


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def rank_seed(seed: int, rank: int) -> int:
    return seed + rank * RANK_SEED_STRIDE


def check_launch(device: str) -> None:
    """Refuse (before any work) a device that torchrun's one-process-per-GPU layout cannot take,
    and a FASTRNN_ALLREDUCE that names no all-reduce."""
    if not launched_by_torchrun():
        return
    if device.startswith("cuda:"):
        raise ValueError(f"--device {device}: under torchrun give --device cuda; each process uses cuda:LOCAL_RANK")
    eligible(device)


@contextmanager
def process_group(device: str) -> Iterator[World]:
    """The World of this process: a gloo (CPU) or NCCL (CUDA, one process per GPU, cuda:LOCAL_RANK)
    process group when torchrun started it, else SINGLE and no group. CPU ranks on one x86-64 host
    reduce their gradients through shared memory (shm_allreduce.py), not gloo's all-reduce."""
    if not launched_by_torchrun():
        yield SINGLE
        return
    check_launch(device)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device == "cuda":
        torch.cuda.set_device(local_rank)  # "cuda" now means this rank's GPU everywhere (tensors, generators)
    use_shared_memory = eligible(device) is None  # raises for a bad FASTRNN_ALLREDUCE before the group starts
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    shared_memory = SharedMemoryAllReduce(rank, size) if use_shared_memory else None
    try:
        yield World(rank, size, local_rank, True, shared_memory)
    finally:
        if shared_memory is not None:
            shared_memory.close()
        dist.destroy_process_group()


def average_gradients(parameters, world: World, sums: list[float] = ()) -> list[float]:
    """Replace every parameter's gradient by its mean over the ranks, and return the element-wise
    sum over the ranks of `sums` (a few statistics: whole counts stay exact below 2**24 in
    float32), all in one all-reduce of a flat buffer. One message per update, not one per tensor
    and one more for the statistics: each costs a fixed latency (shm_allreduce.py)."""
    parameters = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    first = grads[0]
    extra = torch.tensor(list(sums), dtype=first.dtype, device=first.device)
    flat = torch.cat([g.reshape(-1) for g in grads] + [extra])
    world.sum_all_reduce(flat)
    count = flat.numel() - len(extra)
    summed = flat[count:].tolist()
    flat = flat[:count] / world.size
    for parameter, averaged in zip(parameters, flat.split([g.numel() for g in grads])):
        parameter.grad = averaged.view_as(parameter)
    return summed


def to_cpu(value):
    """A copy of a nested state with every tensor on the CPU (what object collectives and other
    nodes can take)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def gather_to_first(value, world: World) -> list | None:
    """Every rank's value (CPU copies), in rank order, on rank 0; None on the others."""
    values = [None] * world.size
    dist.all_gather_object(values, to_cpu(value))  # all_gather: gather_object is not on every backend
    return values if world.first else None


def first_rank_decides(world: World, decide: Callable[[], object]):
    """decide() run on rank 0 only (it reads the run directory, which may be on rank 0's node
    only), its result or its ValueError given to every rank, so all go on or all stop together."""
    if not world.distributed:
        return decide()
    outcome, own_error = None, None
    if world.first:
        try:
            outcome = ("ok", decide())
        except ValueError as error:
            outcome, own_error = ("error", (type(error), str(error))), error
    box = [outcome]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if own_error is not None:
        raise own_error  # its own class (CheckpointError gets its one-line report)
    if kind == "error":
        raise _rebuilt_error(*value)
    return value


def _rebuilt_error(error_class: type, message: str) -> ValueError:
    """Rank 0's error on another rank: of its class where that takes the message alone (so
    CheckpointError and RunLockedError get their one-line report on every rank), else ValueError."""
    try:
        error = error_class(message)
    except TypeError:  # a constructor with other arguments (json.JSONDecodeError)
        return ValueError(message)
    return error if isinstance(error, ValueError) else ValueError(message)
