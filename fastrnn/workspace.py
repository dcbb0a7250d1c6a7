"""Reused CPU memory for temporaries that die within one call: a sequence forward's input
projection.

A fresh large tensor pays a page fault per 4 KiB page when first written: glibc hands blocks
above its mmap threshold (at most 32 MiB) back to the kernel when they are freed, so every
call faults its temporaries in again. On the 2-core CI machine a fault cost 2.9 us (a fresh
52 MB buffer filled in 46 ms, the same buffer reused in 8 ms). The input projection of a
sequence is T x B x 4H elements, four times the output: at H=512, B=64, T=100 it is 52 MB and
12.8k faults per forward, where torch.nn.LSTM's oneDNN forward keeps its projection in a
scratchpad it reuses. The projection lives only until its layer's recurrence has read it
(under autograd too: the graph keeps its operands, layers.py), so it is written into one buffer
per thread and dtype, kept between calls and grown when a call needs more. Only projections
of layers.WORKSPACE_MIN_BYTES or more take it: below, glibc reuses freed blocks without faults
and the workspace's route costs more than it saves (layers.py says what was measured).
clear_workspace() frees this thread's buffers.

Only eager calls use it: under torch.compile or tracing a write into a cached buffer would be
recorded into the graph."""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

from fastrnn.torch_compat import functorch_transforms_active

_local = threading.local()


def workspace_applies(*tensors: Tensor | None) -> bool:
    """Whether a temporary computed from these tensors may live in the workspace: all on the
    CPU, and an eager call outside torch.func transforms (under torch.compile or tracing a
    write into a cached buffer would be recorded into the graph; transforms wrap tensors). The
    caller decides what autograd allows (layers.py)."""
    present = [t for t in tensors if t is not None]
    return (bool(present) and all(t.device.type == "cpu" for t in present)
            and not (torch.compiler.is_compiling() or torch.jit.is_tracing())
            and not functorch_transforms_active())


def workspace(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A contiguous tensor of `shape` on this thread's buffer for `dtype`; its contents are
    undefined and last until the next workspace() call of this thread and dtype."""
    numel = math.prod(shape)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < numel:
        # A normal tensor even when made under inference_mode, so that it can be written later
        # outside it (an inference tensor could not).
        with torch.inference_mode(False):
            buffer = buffers[dtype] = torch.empty(numel, dtype=dtype)
    # A new tensor on the buffer's memory, not a view of it: autograd tracks views (a Function
    # returning one, or a write into the base of one it recorded, is checked), and each call's
    # alias gets its own version counter.
    with torch.no_grad():
        return torch.empty(0, dtype=dtype).set_(buffer.untyped_storage(), 0, shape)


def clear_workspace() -> None:
    """Free this thread's workspace buffers (the next call that needs one allocates it again)."""
    _local.buffers = {}
