"""The fused step + readout + greedy choice on the cpp backend: one native call per step
(_C.StepHeads, csrc/rl_heads.cpp) on the step's packed weights (fastrnn.cpp_backend)."""

from __future__ import annotations

import torch

from fastrnn import _C
from fastrnn.cpp_backend import DTYPE_CODES, cell_weights


def bind_step_heads(weights, head_w, num_actions, batch, buffers, steps):
    """The fused step with its weights packed, its head and its buffers bound once: returns
    step(t, h, c, reset) -> (h_next, c_next), which reads row t of the inputs, head addends and
    (with reset) resets, and writes row t of head_out and actions. Called only where
    fastrnn.dispatch routes the step to cpp (its weights within STEP_PACK_LIMIT_BYTES).

    buffers: (inputs, head_addends, head_out, actions, resets or None), each contiguous with
    at least `steps` rows of one step each. _C.StepHeads holds them and does the row arithmetic."""
    w_hh = weights[1]
    head_w = head_w.contiguous()
    rows = [(t, 0 if t is None or steps == 1 else t.stride(0) * t.element_size()) for t in buffers]
    bound = _C.StepHeads(DTYPE_CODES[w_hh.dtype], cell_weights(*weights), batch, head_w, head_w.shape[1],
                         num_actions, rows, steps)

    def step(t, h, c, reset):
        h, c = h.contiguous(), c.contiguous()
        h_out, c_out = torch.empty_like(h), torch.empty_like(c)
        bound.step(t, h, c, reset, h_out, c_out, torch.get_num_threads())
        return h_out, c_out
    return step


def step_heads(x, h, c, weights, resets, head_w, head_addend, num_actions):
    """One fused step over one call's tensors: (h_next, c_next, head_out, actions)."""
    batch = c.numel() // c.shape[-1]
    x, head_addend = x.contiguous(), head_addend.contiguous()
    resets = None if resets is None else resets.contiguous()
    head_out = torch.empty_like(head_addend)
    actions = torch.empty(head_addend.shape[0], dtype=torch.int64)
    step = bind_step_heads(weights, head_w, num_actions, batch, (x, head_addend, head_out, actions, resets), steps=1)
    h_out, c_out = step(0, h, c, resets is not None)
    return h_out, c_out, head_out, actions
