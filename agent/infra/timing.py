"""Phase timers for the profile breakdown (bench/agent.py). Disabled, a phase costs one
attribute lookup and a shared no-op context manager."""

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

    def phase(self, name: str):
        return self._timed(name) if self.enabled else _NOOP

    @contextmanager
    def _timed(self, name: str):
        if self._sync:
            self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                self._sync()
            self.totals[name] += time.perf_counter() - start

    def reset(self) -> None:
        self.totals.clear()
