"""Phase timers for the profile breakdown (bench/agent.py). Disabled, a phase costs one
attribute lookup and a shared no-op context manager.

Phases may nest: a phase's total excludes the phases timed inside it, so the totals of all
phases add up to the time spent in any of them (the rollout's native loop times its
environment steps inside its core steps: rollout.py)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

_NOOP = nullcontext()


class PhaseTimer:
    def __init__(self, enabled: bool = False, sync=None):
        self.enabled = enabled
        self.totals: dict[str, float] = defaultdict(float)
        # On CUDA, kernels run asynchronously: pass torch.cuda.synchronize to time them.
        self._sync = sync
        # Per open phase, the seconds its nested phases took (subtracted from its own total).
        self._nested: list[float] = []

    def phase(self, name: str):
        return self._timed(name) if self.enabled else _NOOP

    def timed(self, name: str, function):
        """function, its calls timed as phase `name` when enabled; function itself when not (a
        call per environment step pays nothing for a profile nobody asked for)."""
        if not self.enabled:
            return function

        def timed_call(*args, **kwargs):
            with self._timed(name):
                return function(*args, **kwargs)
        return timed_call

    @contextmanager
    def _timed(self, name: str):
        if self._sync:
            self._sync()
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            if self._sync:
                self._sync()
            elapsed = time.perf_counter() - start
            self.totals[name] += elapsed - self._nested.pop()
            if self._nested:
                self._nested[-1] += elapsed

    def reset(self) -> None:
        self.totals.clear()
