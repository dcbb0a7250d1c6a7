"""Kernel-specific layouts of weights, cached on the weights' version counters.

A packed copy is reused while its source tensors are the same objects, with the same storage
address and version counters. Eviction is least-recently-packed first. Every in-place update through autograd-visible ops (an
optimizer step, ``load_state_dict``, ``with torch.no_grad(): w.copy_(...)``) bumps the
version, so the next call repacks. Writes through ``tensor.data`` bypass version counters in
PyTorch; after such a write, call ``fastrnn.clear_weight_cache()``.

Entries hold references to their source tensors, so neither an object id nor a storage
address in a key can be reused by another tensor while the entry lives.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from torch import Tensor

_all_caches: list["WeightCache"] = []


def _stamp(tensor: Tensor | None):
    if tensor is None:
        return None
    try:
        return (tensor.data_ptr(), tensor._version)
    except RuntimeError:  # inference tensors have no version counter: never cached
        return False


class WeightCache:
    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()
        _all_caches.append(self)

    def get(self, kind: str, sources: tuple, make: Callable):
        """make(*sources), reused while every tensor in `sources` (None allowed) is unchanged."""
        key = (kind, *map(id, sources))
        entry = self._entries.get(key)
        stamps = tuple(map(_stamp, sources))
        if entry is not None and entry[1] == stamps:
            return entry[2]
        value = make(*sources)
        if False in stamps:
            return value
        self._entries[key] = (sources, stamps, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()


def clear_weight_cache() -> None:
    """Forget every packed weight (needed only after writes through ``tensor.data``)."""
    for cache in _all_caches:
        cache.clear()
