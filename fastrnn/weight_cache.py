"""Kernel-specific layouts of weights, rebuilt whenever the weights' contents change.

nn.LSTM reads its parameters on every call, so a drop-in must too, however they were
written: optimizer steps and ``load_state_dict`` bump version counters, but writes through
``param.data`` (a soft target-network update), ``vector_to_parameters`` into ``.data`` and
the like do not. Version counters therefore prove nothing, and an entry is reused only
while each source is the same tensor object at the same address with the same layout and
the same bytes as the snapshot taken when it was packed (a memcmp: the check reads the
weights once, where repacking would read and write them). Entries are immutable: a change
builds a new one, so a thread still running on the old one keeps valid memory. A lock
guards the table, so a module shared by several threads packs consistently.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import torch
from torch import Tensor

_all_caches: list["WeightCache"] = []


def _layout(tensor: Tensor | None):
    if tensor is None:
        return None
    return (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))


def _snapshot(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.detach().clone(memory_format=torch.contiguous_format)


class _Entry:
    __slots__ = ("sources", "layouts", "snapshots", "value")

    def __init__(self, sources: tuple, value):
        self.sources = sources  # held, so no other tensor can take their ids or addresses
        self.layouts = tuple(map(_layout, sources))
        self.snapshots = tuple(map(_snapshot, sources))
        self.value = value


class WeightCache:
    """make(*sources) per (kind, layout key, source tensors), reused while their bytes are unchanged.

    same_bytes(a, b) compares two tensors of one layout bitwise; the default is torch.equal
    on their bit patterns, a backend may pass a faster one.
    """

    def __init__(self, capacity: int = 32, same_bytes: Callable[[Tensor, Tensor], bool] | None = None):
        self.capacity = capacity
        self._same_bytes = same_bytes or _same_bits
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        _all_caches.append(self)

    def get(self, kind: str, sources: tuple, make: Callable, layout_key=None):
        key = (kind, layout_key, *map(id, sources))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._unchanged(entry, sources):
                return entry.value
            entry = _Entry(sources, make(*sources))
            self._entries[key] = entry
            self._entries.move_to_end(key)
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry.value

    def _unchanged(self, entry: _Entry, sources: tuple) -> bool:
        for source, layout, snapshot in zip(sources, entry.layouts, entry.snapshots):
            if source is None:
                continue
            if _layout(source) != layout or not self._same_bytes(source, snapshot):
                return False
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


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
