"""RolloutPlan: rollout_step over a rollout's buffers, with everything that does not change
from one step to the next checked and bound once.

An RL rollout calls rollout_step once per environment step, tens of times between two weight
updates, on rows of the same buffers. At agent sizes (B=32, H=48) the fused C++ step costs
about as much as the Python around it: the argument checks, the weight-cache lookup, the
output allocations. A plan does those once: it checks the buffers when it is made, binds the
backend's packed weights and the head, and then each step checks only what the caller passes
anew (t, the state) and runs the bound step, which reads and writes row t of the buffers it
holds (fastrnn/rl/cpp.py). Same kernel, same arguments, same bits as rollout_step
(tests/fastrnn/test_rollout_plan.py).

A plan runs on the weights the module had when it was made (as a packed-weight cache entry
does under fastrnn.trust_version_counters()): a step raises if one of them, or the head
weight, was modified in place since, which optimizer steps and load_state_dict do. Make a
new plan after each weight update. The buffers' contents may change between steps (that is
how a rollout feeds the next input); their memory may not (a step raises if a buffer was
resized or re-pointed, before the kernel could touch the old addresses).
"""

from __future__ import annotations

import operator
from typing import Callable

import torch
from torch import Tensor

_version = operator.attrgetter("_version")
_NAME = "rollout_plan"  # errors name the method that made the plan


class RolloutPlan:
    """Step t reads inputs[t], head_addends[t] and (when asked) resets[t], and writes
    actions[t] and head_out[t]: rollout_step(inputs[t], state, head_weight, head_addends[t],
    num_actions, resets[t] or None) with its results in those rows. Made by fastrnn.rl.rollout_plan."""

    def __init__(self, rollout_step: Callable, sizes: tuple[int, int, int], weights: tuple,
                 inputs: Tensor, head_weight: Tensor, head_addends: Tensor, num_actions: int,
                 resets: Tensor | None, actions: Tensor | None, head_out: Tensor | None, bind: Callable | None):
        """rollout_step: the module's (the composed path); sizes:
        (input size, output size R, hidden size H); weights: the layer's (w_ih, w_hh, b_ih, b_hh,
        w_hr), None where absent; bind: the backend's binder of a fused step (None: composed)."""
        input_size, out_size, hidden_size = sizes
        weight = next(w for w in weights if w is not None)
        _check_buffers(input_size, out_size, weight, inputs, head_weight, head_addends, num_actions,
                       resets, actions, head_out)
        steps, batch, outputs = head_addends.shape
        self.steps, self.batch, self.num_actions = steps, batch, num_actions
        self.inputs, self.head_weight, self.head_addends, self.resets = inputs, head_weight, head_addends, resets
        self.actions = torch.empty(steps, batch, dtype=torch.int64, device=weight.device) if actions is None else actions
        self.head_out = torch.empty(steps, batch, outputs, dtype=weight.dtype, device=weight.device) \
            if head_out is None else head_out
        self._state_shapes = ((1, batch, out_size), (1, batch, hidden_size))
        self._dtype, self._device = weight.dtype, weight.device
        self._sources = tuple(w for w in (*weights, head_weight) if w is not None)
        # Inference tensors have no version counter (nor can they change outside inference_mode).
        self._versions = None if any(t.is_inference() for t in self._sources) else tuple(map(_version, self._sources))
        self._needs_grad = any(t.requires_grad for t in (*self._sources, inputs, head_addends))
        self._rollout_step = rollout_step
        # The fused path: the backend binds the weights, the head and the buffers once, and
        # does the row arithmetic over the buffers it holds (fastrnn/rl/cpp.py).
        self._bound = None if bind is None else bind(weights, head_weight, num_actions, batch,
                                                     (inputs, head_addends, self.head_out, self.actions, resets), steps)
        if self._bound is None:  # the composed path steps on rows, views made once
            self._input_rows, self._addend_rows = inputs.unbind(0), head_addends.unbind(0)
            self._reset_rows = None if resets is None else resets.unbind(0)

    def step(self, t: int, state: tuple[Tensor, Tensor], reset: bool = False) -> tuple[Tensor, Tensor]:
        """Step t from state (h, c), each row's state zeroed first where resets[t] is True when
        reset; returns the new state (fresh tensors) and fills actions[t] and head_out[t]."""
        h, c = state
        if not (type(t) is int and 0 <= t < self.steps and h.shape == self._state_shapes[0]
                and c.shape == self._state_shapes[1] and h.dtype == c.dtype == self._dtype
                and h.device == c.device == self._device and (not reset or self.resets is not None)):
            self._step_error(t, h, c, reset)
        if self._needs_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{_NAME} computes no gradient: step it under torch.no_grad()")
        if self._versions is not None and tuple(map(_version, self._sources)) != self._versions:
            raise RuntimeError(f"{_NAME}: the LSTM's weights or the head weight were modified since the "
                               "plan was made; make a new plan after each weight update")
        if self._bound is None:
            actions, head_out, state = self._rollout_step(
                self._input_rows[t], state, self.head_weight, self._addend_rows[t], self.num_actions,
                self._reset_rows[t] if reset else None)
            self.actions[t].copy_(actions)
            self.head_out[t].copy_(head_out)
            return state
        return self._bound(t, h, c, reset)

    def _step_error(self, t, h, c, reset) -> None:
        if type(t) is not int or not 0 <= t < self.steps:
            raise ValueError(f"{_NAME}: t must be an int from 0 to {self.steps - 1}, got {t!r}")
        for label, tensor, shape in (("state[0]", h, self._state_shapes[0]), ("state[1]", c, self._state_shapes[1])):
            if tensor.shape != shape:
                raise ValueError(f"{_NAME}: {label} must be {shape}, got {tuple(tensor.shape)}")
            if tensor.dtype != self._dtype or tensor.device != self._device:
                raise ValueError(f"{_NAME}: {label} is {tensor.dtype} on {tensor.device}; the LSTM's weights are "
                                 f"{self._dtype} on {self._device}")
        raise ValueError(f"{_NAME}: reset=True needs the plan to have been made with resets")


def _check_buffers(input_size, out_size, weight, inputs, head_weight, head_addends, num_actions, resets,
                   actions, head_out) -> None:
    """Every buffer as the plan reads or writes it: shapes, dtypes, device, contiguous (the
    fused step takes their addresses; the head weight may be any view). Raises ValueError
    naming the first argument that is not."""
    if head_addends.dim() != 3:
        raise ValueError(f"{_NAME}: head_addends must be (steps, batch, outputs), got {tuple(head_addends.shape)}")
    steps, batch, outputs = head_addends.shape
    if inputs.dim() != 3 or inputs.shape[0] < steps or inputs.shape[1:] != (batch, input_size):
        raise ValueError(f"{_NAME}: inputs must be (at least {steps} steps, {batch}, {input_size}), "
                         f"got {tuple(inputs.shape)}")
    if head_weight.shape != (out_size, outputs):
        raise ValueError(f"{_NAME}: head_weight must be ({out_size}, {outputs}), got {tuple(head_weight.shape)}")
    if type(num_actions) is not int or not 1 <= num_actions <= outputs:
        raise ValueError(f"{_NAME}: num_actions must be an int from 1 to {outputs}, got {num_actions!r}")
    expected = {"inputs": (inputs, weight.dtype), "head_weight": (head_weight, weight.dtype),
                "head_addends": (head_addends, weight.dtype)}
    if resets is not None:
        if resets.dim() != 2 or resets.shape[0] < steps or resets.shape[1] != batch:
            raise ValueError(f"{_NAME}: resets must be (at least {steps} steps, {batch}), got {tuple(resets.shape)}")
        expected["resets"] = (resets, torch.bool)
    if actions is not None:
        if actions.shape != (steps, batch):
            raise ValueError(f"{_NAME}: actions must be ({steps}, {batch}), got {tuple(actions.shape)}")
        expected["actions"] = (actions, torch.int64)
    if head_out is not None:
        if head_out.shape != (steps, batch, outputs):
            raise ValueError(f"{_NAME}: head_out must be ({steps}, {batch}, {outputs}), got {tuple(head_out.shape)}")
        expected["head_out"] = (head_out, weight.dtype)
    for label, (tensor, dtype) in expected.items():
        if tensor.dtype != dtype or tensor.device != weight.device:
            raise ValueError(f"{_NAME}: {label} must be {dtype} on {weight.device} (the LSTM's weights' device), "
                             f"got {tensor.dtype} on {tensor.device}")
        if label != "head_weight" and not tensor.is_contiguous():  # the head is bound as a contiguous copy
            raise ValueError(f"{_NAME}: {label} must be contiguous")
