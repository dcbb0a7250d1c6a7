"""The fused step + readout + greedy choice on the cpp backend: one native call per step, or one
per rollout with the environment called back between the steps (_C.StepHeads,
csrc/rl_heads.cpp), on the step's packed weights (fastrnn.cpp_backend); and the sequence
backward over what those steps saved (the cpp backend's own backward kernel)."""

from __future__ import annotations

import torch

from fastrnn import _C
from fastrnn.cpp_backend import DTYPE_CODES, LAUNCHER, cell_weights
from fastrnn.recurrence_op import BackwardOutputs, Inputs, OutputGrads


def bind_step_heads(weights, head_w, num_actions, batch, buffers, steps, states=None,
                    one_step_rows: bool = False) -> "BoundStepHeads":
    """The fused step with its weights packed, its head and its buffers bound once: its step(t,
    h, c, reset) -> (h_next, c_next) reads row t of the inputs, head addends and (with reset)
    resets, and writes row t of head_out and actions; its run() takes every step in one native
    loop. Called only where fastrnn.dispatch routes the step to cpp (its weights within
    STEP_PACK_LIMIT_BYTES).

    buffers: (inputs, head_addends, head_out, actions, resets or None, then gates, applied
    resets, inputs read and states h read, each None or saved for backward: RolloutPlan's), each contiguous
    with at least `steps` rows of one step each. _C.StepHeads holds them and does the row
    arithmetic. states: (hidden (steps, B, R), cells (steps, B, H)), contiguous, where step t
    writes its new state (a plan saving for backward keeps them there), or None.
    one_step_rows: the buffers are one step's rows without a leading step dimension (step_heads'
    (B, ...) tensors), so their row stride is 0; else it is their first dimension's, also for a
    one-step plan, whose run() and next_state() write and read its inputs' and resets' row 1."""
    w_hh = weights[1]
    head_w = head_w.contiguous()
    rows = [(t, 0 if t is None or one_step_rows else t.stride(0) * t.element_size()) for t in buffers]
    bound = _C.StepHeads(DTYPE_CODES[w_hh.dtype], cell_weights(*weights), batch, head_w, head_w.shape[1],
                         num_actions, rows, steps)
    # Every step's new state, rows allocated once (or the caller's): step t returns row t, which
    # no later step of this plan writes (a caller may keep it, as a rollout keeps its last state
    # for the next one).
    if states is None:
        states = (torch.empty(steps, batch, w_hh.shape[1], dtype=w_hh.dtype),
                  torch.empty(steps, batch, w_hh.shape[0] // 4, dtype=w_hh.dtype))
    return BoundStepHeads(bound, states)


class BoundStepHeads:
    """_C.StepHeads with the rows its steps write their new states into."""

    def __init__(self, bound, states):
        self._bound, self._states = bound, states
        self._rows = None  # step()'s (1, B, .) views of every state row, made at its first call

    def step(self, t, h, c, reset):
        if self._rows is None:  # a T-row unbind costs microseconds a row: only where steps need them
            self._rows = tuple(rows_of.unsqueeze(1).unbind(0) for rows_of in self._states)
        h, c = h.contiguous(), c.contiguous()
        h_out, c_out = self._rows[0][t], self._rows[1][t]
        self._bound.step(t, h, c, reset, h_out, c_out, torch.get_num_threads())
        return h_out, c_out

    def next_state(self, t, h, c, reset):
        """The LSTM step alone on input row t (RolloutPlan.next_state): new (h, c) tensors."""
        h, c = h.contiguous(), c.contiguous()
        h_out, c_out = torch.empty_like(h), torch.empty_like(c)
        self._bound.cell(t, h, c, reset, h_out, c_out, torch.get_num_threads())
        return h_out, c_out

    def run(self, h, c, reset, obs_size, num_signals, env, action_rows, rewards_out):
        """Every step, each followed by env (RolloutPlan.run), in one native call: (the state
        after the last step, whether the reset row after it holds a True)."""
        h, c = h.contiguous(), c.contiguous()
        reset = self._bound.run(h, c, reset, *self._states, obs_size, num_signals, env, action_rows, rewards_out,
                                torch.get_num_threads())
        return tuple(rows_of[-1:] for rows_of in self._states), reset


def step_heads(x, h, c, weights, resets, head_w, head_addend, num_actions):
    """One fused step over one call's tensors: (h_next, c_next, head_out, actions)."""
    batch = c.numel() // c.shape[-1]
    x, head_addend = x.contiguous(), head_addend.contiguous()
    resets = None if resets is None else resets.contiguous()
    head_out = torch.empty_like(head_addend)
    actions = torch.empty(head_addend.shape[0], dtype=torch.int64)
    buffers = (x, head_addend, head_out, actions, resets, None, None, None, None)
    bound = bind_step_heads(weights, head_w, num_actions, batch, buffers, steps=1, one_step_rows=True)
    h_out, c_out = bound.step(0, h, c, resets is not None)
    return h_out, c_out, head_out, actions


def sequence_backward(weights, saved, initial, grad_hidden, grads):
    """RolloutPlan.backward on the cpp backend: the gate gradients from the backward kernel over
    the saved steps, then the weight gradients as three products over all T * B rows.
    weights: the layer's (w_ih, w_hh, b_ih, b_hh, None); saved: SavedSteps; initial: (h0, c0),
    (B, H) each; grad_hidden (T, B, H) contiguous; grads: RolloutPlan.backward's, checked."""
    w_ih, w_hh, b_ih, b_hh, _ = weights
    steps, batch, four_h = saved.gates.shape
    h0, c0 = initial
    grad_gates = torch.empty_like(saved.gates)
    LAUNCHER.backward(Inputs(None, w_hh.detach().contiguous(), None, h0, c0, saved.applied, None),
                      OutputGrads(grad_hidden, None, None), saved.gates, saved.cells,
                      BackwardOutputs(grad_gates, torch.empty_like(h0), torch.empty_like(c0), grad_gates.new_empty(0)))
    previous = saved.previous  # h_{t-1} as step t read it: h0 first, zero where the step reset its state
    gate_rows = grad_gates.view(steps * batch, four_h)
    rows = gate_rows.t()
    out = grads or (None,) * 4
    # W_ih's gradient as (inputs^T grad_gates)^T, the form autograd takes for the narrow input
    # projection (fastrnn/layers.py, _NarrowLinear): at an agent's few input columns the product
    # with them as its last dimension (grad_gates^T inputs) took 165 us of a two_step update's
    # 2.8 ms on an AMD EPYC (MKL's AVX2 code), this one 31 us.
    grad_w_ih_t = torch.mm(saved.inputs.view(steps * batch, -1).t(), gate_rows)
    grad_w_ih = grad_w_ih_t.t().contiguous() if out[0] is None else out[0].copy_(grad_w_ih_t.t())
    grad_w_hh = torch.mm(rows, previous.view(steps * batch, -1), out=out[1])
    if b_ih is None:
        return grad_w_ih, grad_w_hh, None, None
    grad_b_ih = torch.sum(rows, 1, out=out[2])
    grad_b_hh = grad_b_ih.clone() if out[3] is None else out[3].copy_(grad_b_ih)
    return grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
