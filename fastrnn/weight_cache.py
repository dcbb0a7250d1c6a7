"""Kernel-specific layouts of weights, rebuilt whenever the weights' contents change.

nn.LSTM reads its parameters on every call, so a drop-in must too, however they were
written: optimizer steps and ``load_state_dict`` bump version counters, but writes through
``param.data`` (a soft target-network update), ``vector_to_parameters`` into ``.data`` and
the like do not. Version counters therefore prove nothing, and an entry is reused only
while each source is the same tensor object at the same address with the same shape and
the same bytes as the snapshot taken when it was packed. The byte check is one memcmp per
weight (it reads the weights once, where repacking would read and write them; its cost is
measured by ``python -m bench cpu``). Entries are immutable: a change builds a new one, so a
thread still running on the old one keeps valid memory. A lock guards the table, so a
module shared by several threads packs consistently.

Why a cache at all: the packed layout is what makes the CPU step fast. A step reading the
weights as torch stores them (ATen's lstm_cell, same Python around it) took 1.7-2.9x the
packed step's time at H = 48-128, B = 1-256 (2026-12-07, `scripts/ab.py` on
`bench.cpu:step_call`; docs/performance-log.md), far outside the 10% within which explicit
state would have replaced this cache. Where the check costs more than packing saves (large
weights, small batches), fastrnn.dispatch sends the step to lstm_cell instead.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections import OrderedDict
from typing import Callable

import torch
from torch import Tensor

from fastrnn.torch_compat import version

_all_caches: list["WeightCache"] = []
_trust = threading.local()


@contextlib.contextmanager
def trust_version_counters():
    """Within this block (this thread), a cached packed weight is reused while its source
    tensors keep their addresses and version counters, without comparing bytes.

    For code that writes weights only in ways that bump version counters (optimizer steps,
    ``load_state_dict``, in-place ops on the parameters under ``torch.no_grad()``) and never
    through ``.data``, numpy views or other aliases: a loop of steps between optimizer updates. The
    default, outside this block, compares bytes and is exact whatever wrote the weights.
    """
    previous = getattr(_trust, "on", False)
    _trust.on = True
    try:
        yield
    finally:
        _trust.on = previous


class _Entry:
    __slots__ = ("sources", "present", "addresses", "versions", "snapshots", "native_check", "value")

    def __init__(self, sources: tuple, value, native_snapshots):
        self.sources = sources  # held, so no other tensor can take their ids or addresses
        self.present = tuple(t for t in sources if t is not None)
        self.addresses = tuple(map(Tensor.data_ptr, self.present))
        self.versions = _versions(self.present)
        self.snapshots = tuple(t.detach().clone(memory_format=torch.contiguous_format) for t in self.present)
        # One native object holding every (source, snapshot) pair compares them all in one call.
        contiguous = all(t.is_contiguous() for t in self.present)
        self.native_check = native_snapshots(list(zip(self.present, self.snapshots))) \
            if native_snapshots is not None and contiguous else None
        self.value = value

    def unchanged(self, sources: tuple) -> bool:
        # Cheapest first: the same tensor objects at the same addresses (`p.data = ...` moves
        # them, and the bytes at an old address may be freed), then the bytes. Runs on every
        # no-grad step, so the loops are C-level maps.
        if not all(map(operator.is_, sources, self.sources)):
            return False
        if tuple(map(Tensor.data_ptr, self.present)) != self.addresses:
            return False
        if getattr(_trust, "on", False) and self.versions is not None:
            if _versions(self.present) == self.versions:
                return True  # trust_version_counters(): the caller vouches for .data writes
        if self.native_check is not None:
            return self.native_check.equal()
        return all(_same_bits(t, s) for t, s in zip(self.present, self.snapshots))


class WeightCache:
    """make(*sources) per (kind, layout key, source tensors), reused while their bytes are unchanged.

    snapshots(pairs) makes an object holding contiguous (source, snapshot) pairs whose
    ``equal()`` compares them bitwise (fastrnn._C.Snapshots: one memcmp each for the cpp
    backend); without it, torch.equal on the bit patterns.
    """

    def __init__(self, capacity: int = 32, snapshots: Callable[[list], object] | None = None):
        self.capacity = capacity
        self._snapshots = snapshots
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        _all_caches.append(self)

    def get(self, kind: str, sources: tuple, make: Callable, layout_key=None):
        # Keyed by the first source's identity; the entry checks that every source is the one it holds.
        key = (kind, layout_key, id(sources[0]))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.unchanged(sources):
                return entry.value
            entry = _Entry(sources, make(*sources), self._snapshots)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry.value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _versions(tensors: tuple) -> tuple | None:
    try:
        return tuple(map(version, tensors))
    except RuntimeError:  # inference tensors have no version counter
        return None


def _same_bits(a: Tensor, b: Tensor) -> bool:
    a, b = a.detach(), b.detach()
    if a.is_floating_point():
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        a, b = a.contiguous().view(bits), b.view(bits)
    return torch.equal(a, b)


def clear_weight_cache() -> None:
    """Forget every packed weight. Never needed for correctness (every call checks the
    weights' contents); it only frees the packed copies and their snapshots."""
    for cache in _all_caches:
        cache.clear()
