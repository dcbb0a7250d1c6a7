"""Counting the cpp backend's native calls, for tests that prove a path makes exactly one."""

from fastrnn import cpp_backend


def count_native_calls(monkeypatch) -> dict:
    """From now on (this test), counts LSTM steps alone (_C.cell, _C.StepHeads.cell) under
    "cell", fused step + heads calls (_C.StepHeads.step) under "cell_heads" and native rollout
    loops (_C.StepHeads.run, each many fused steps) under "run"; returns the live counts."""
    calls = {"cell_heads": 0, "cell": 0, "run": 0}
    native_cell, native_step_heads = cpp_backend._C.cell, cpp_backend._C.StepHeads

    def cell(*args, **kwargs):
        calls["cell"] += 1
        return native_cell(*args, **kwargs)

    class StepHeads:
        def __init__(self, *args, **kwargs):
            self._bound = native_step_heads(*args, **kwargs)

        def step(self, *args, **kwargs):
            calls["cell_heads"] += 1
            return self._bound.step(*args, **kwargs)

        def cell(self, *args, **kwargs):
            calls["cell"] += 1
            return self._bound.cell(*args, **kwargs)

        def run(self, *args, **kwargs):
            calls["run"] += 1
            return self._bound.run(*args, **kwargs)

    monkeypatch.setattr(cpp_backend._C, "cell", cell)
    monkeypatch.setattr(cpp_backend._C, "StepHeads", StepHeads)
    return calls
