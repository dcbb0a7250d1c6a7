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

A plan made with save_for_backward=True, where it runs the fused step, also keeps what a
sequence backward needs of each step (the activated gates, c_t, h_t and the resets applied), and
plan.backward(grad_hidden) then gives the LSTM weights' gradients of a loss on the steps'
hidden states through the whole recurrence the steps ran: an actor-critic learning pass on the
weights that collected the rollout needs no second forward over it (agent/core/learner.py).

A plan runs on the weights the module had when it was made (as a packed-weight cache entry
does under fastrnn.trust_version_counters()): a step raises if one of them, or the head
weight, was modified in place since, which optimizer steps and load_state_dict do. Make a
new plan after each weight update. The buffers' contents may change between steps (that is
how a rollout feeds the next input); their memory may not (a step raises if a buffer was
resized or re-pointed, before the kernel could touch the old addresses).
"""

from __future__ import annotations

import operator
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from fastrnn.rl.cpp import sequence_backward
from fastrnn.rl.inputs import check_row_parts, write_next_input

_version = operator.attrgetter("_version")
_NAME = "rollout_plan"  # errors name the method that made the plan


class RolloutPlan:
    """Step t reads inputs[t], head_addends[t] and (when asked) resets[t], and writes
    actions[t] and head_out[t]: rollout_step(inputs[t], state, head_weight, head_addends[t],
    num_actions, resets[t] or None) with its results in those rows. Made by fastrnn.rl.rollout_plan."""

    def __init__(self, rollout_step: Callable, lstm_step: Callable, sizes: tuple[int, int, int], weights: tuple,
                 inputs: Tensor, head_weight: Tensor, head_addends: Tensor, num_actions: int,
                 resets: Tensor | None, actions: Tensor | None, head_out: Tensor | None, bind: Callable | None,
                 save_for_backward: bool = False):
        """rollout_step: the module's (the composed path); lstm_step: the LSTM's own no-grad
        step, (x, h, c, weights, resets) -> (h, c) (next_state's composed path); sizes:
        (input size, output size R, hidden size H); weights: the layer's (w_ih, w_hh, b_ih, b_hh,
        w_hr), None where absent; bind: the backend's binder of a fused step (None: composed);
        save_for_backward: keep what backward() needs, where the step is fused and has no
        projection (saves_for_backward says whether it does)."""
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
        self._lstm_step = lstm_step
        self._weights = weights
        # What backward() needs of each step, written by the fused step (None: not saved).
        self.saved = SavedSteps.allocate(steps, batch, input_size, hidden_size, weight) \
            if save_for_backward and bind is not None and weights[4] is None else None
        self._chain = _Chain(self.saved)
        self._action_rows = None  # run()'s rows of actions, made at its first call
        saved = self.saved or SavedSteps(*(None,) * 6)
        # The fused path: the backend binds the weights, the head and the buffers once, and
        # does the row arithmetic over the buffers it holds (fastrnn/rl/cpp.py). A saving
        # plan's steps write their new states straight into saved.hidden and saved.cells.
        self._bound = None if bind is None else bind(
            weights, head_weight, num_actions, batch,
            (inputs, head_addends, self.head_out, self.actions, resets, saved.gates, saved.applied, saved.inputs,
             saved.previous),
            steps, None if self.saved is None else (saved.hidden, saved.cells))
        if self._bound is None:  # the composed path steps on rows, views made once
            self._input_rows, self._addend_rows = inputs.unbind(0), head_addends.unbind(0)
            self._reset_rows = None if resets is None else resets.unbind(0)

    def step(self, t: int, state: tuple[Tensor, Tensor], reset: bool = False) -> tuple[Tensor, Tensor]:
        """Step t from state (h, c), each row's state zeroed first where resets[t] is True when
        reset; returns the new state and fills actions[t] and head_out[t]. The fused step
        returns row t of state buffers the plan allocated once, which only step t writes."""
        h, c = state
        if not (type(t) is int and 0 <= t < self.steps and h.shape == self._state_shapes[0]
                and c.shape == self._state_shapes[1] and h.dtype == c.dtype == self._dtype
                and h.device == c.device == self._device and (not reset or self.resets is not None)):
            self._step_error(t, h, c, reset)
        if self._needs_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{_NAME} computes no gradient: step it under torch.no_grad()")
        self._check_weights()
        if self._bound is None:
            actions, head_out, state = self._rollout_step(
                self._input_rows[t], state, self.head_weight, self._addend_rows[t], self.num_actions,
                self._reset_rows[t] if reset else None)
            self.actions[t].copy_(actions)
            self.head_out[t].copy_(head_out)
            return state
        if self.saved is None:
            return self._bound.step(t, h, c, reset)
        self._chain.enter(t, h, c)
        state = self._bound.step(t, h, c, reset)
        self._chain.leave(state)
        return state

    def next_state(self, state: tuple[Tensor, Tensor], reset: bool = False) -> tuple[Tensor, Tensor]:
        """The LSTM's step on inputs[T], the row after the plan's last step, from state (h, c),
        zeroed first where resets[T] is True when reset: the state an actor-critic reads its
        bootstrap value from, on the weights the plan was made with. No head, no action, nothing
        saved. Returns new (h, c) tensors, bit for bit the LSTM's own no-grad step on that row
        (tests/fastrnn/test_rollout_run.py); on the fused step one native call on the bound
        weights, with none of the module call's dispatch."""
        h, c = state
        self._check_call(h, c, "next_state")
        if self.inputs.shape[0] <= self.steps or reset and (self.resets is None or self.resets.shape[0] <= self.steps):
            raise ValueError(f"{_NAME}: next_state reads row {self.steps} of inputs (and of resets, with reset): "
                             f"they must have {self.steps + 1} rows")
        if self._bound is not None:
            return self._bound.next_state(self.steps, h, c, reset)
        return self._lstm_step(self.inputs[self.steps], h, c, self._weights, self.resets[self.steps] if reset else None)

    def run(self, state: tuple[Tensor, Tensor], env_step: Callable, obs_size: int, num_signals: int,
            reset: bool = False, rewards_out: Tensor | None = None) -> tuple[tuple[Tensor, Tensor], bool]:
        """Every step of the plan, each followed by the environment, as a meta-RL rollout takes
        them: step t as step(t, state, reset_t), then env_step(t, actions[t]) -> (obs (B, O),
        signals, done), signals a tuple of num_signals (B,) tensors (at most two: the reward, an
        RPE) and done a (B,) bool tensor or None (no row ended its episode). Row t + 1 of the
        inputs is then write_next_input(inputs[t + 1], obs, actions[t], signals, num_actions,
        done) (fastrnn.rl.write_next_input: zeros after the observation where done), row t + 1
        of the resets is done (all False for None), which step t + 1 applies, and row t of
        rewards_out ((T, B), if given) is signals[0]. reset_0 is reset.

        Needs a CPU plan made with resets, inputs and resets of T + 1 rows, and I = O +
        num_actions + num_signals. Returns (the state after step T - 1, whether resets[T] holds
        a True). On the fused step the loop is one native call that calls env_step back, without
        the Python of T step() and write_next_input() calls; elsewhere it makes those calls.
        Either way the bits are those of that loop (tests/fastrnn/test_rollout_run.py)."""
        self._check_run(state, obs_size, num_signals, rewards_out)
        if self._action_rows is None:  # the rows handed to env_step: a task may keep one (it is never rewritten)
            self._action_rows = list(self.actions.unbind(0))
        checked = _checked_env(env_step, self.inputs[0], self.num_actions, num_signals)
        if self._bound is None:
            return self._run_steps(state, checked, reset, rewards_out)
        if self.saved is not None:
            self._chain.enter(0, *state)
            self._chain.broken = True  # until the loop returns: one that raised leaves no backward
        state, last_reset = self._bound.run(*state, reset, obs_size, num_signals, checked, self._action_rows,
                                            rewards_out)
        if self.saved is not None:
            self._chain.ran(self.steps, state)
        self._check_weights()  # env_step may have written them: the steps ran on the plan's
        return state, last_reset

    def _check_call(self, h: Tensor, c: Tensor, method: str) -> None:
        """What next_state() and run() check first, as step() does: the state's shapes, dtype
        and device, no autograd, and the weights unchanged since the plan was made."""
        if not (h.shape == self._state_shapes[0] and c.shape == self._state_shapes[1]
                and h.dtype == c.dtype == self._dtype and h.device == c.device == self._device):
            self._step_error(0, h, c, False)
        if self._needs_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{_NAME} computes no gradient: call {method} under torch.no_grad()")
        self._check_weights()

    def _check_run(self, state, obs_size, num_signals, rewards_out) -> None:
        self._check_call(*state, "run")
        if self.resets is None or self._device.type != "cpu":
            raise ValueError(f"{_NAME}: run needs a plan on the CPU made with resets")
        if not (type(num_signals) is int and 0 <= num_signals <= 2 and type(obs_size) is int and obs_size >= 0
                and obs_size + self.num_actions + num_signals == self.inputs.shape[2]):
            raise ValueError(f"{_NAME}: run's obs_size + num_actions + num_signals must be the input size "
                             f"{self.inputs.shape[2]} (num_signals 0 to 2), got {obs_size!r} + {self.num_actions} "
                             f"+ {num_signals!r}")
        if self.inputs.shape[0] <= self.steps or self.resets.shape[0] <= self.steps:
            raise ValueError(f"{_NAME}: run writes row {self.steps} of inputs and resets, which must have "
                             f"{self.steps + 1} rows, got {self.inputs.shape[0]} and {self.resets.shape[0]}")
        if rewards_out is not None and not (
                num_signals >= 1 and isinstance(rewards_out, Tensor) and rewards_out.shape == (self.steps, self.batch)
                and rewards_out.dtype == self._dtype and rewards_out.device == self._device
                and rewards_out.is_contiguous()):
            got = f"{tuple(rewards_out.shape)} {rewards_out.dtype}" if isinstance(rewards_out, Tensor) else \
                type(rewards_out).__name__
            raise ValueError(f"{_NAME}: rewards_out must be a contiguous ({self.steps}, {self.batch}) {self._dtype} "
                             f"CPU tensor, and num_signals at least 1, got {got} with num_signals {num_signals}")

    def _run_steps(self, state, checked, reset, rewards_out):
        """run() on the composed step: step() and write_next_input() from Python."""
        for t in range(self.steps):
            state = self.step(t, state, reset)
            action = self._action_rows[t]
            obs, first, second, done = checked(t, action)
            signals = tuple(s for s in (first, second) if s is not None)
            write_next_input(self.inputs[t + 1], obs, action, signals, self.num_actions, done)
            if rewards_out is not None:
                rewards_out[t].copy_(first)
            reset = done is not None and bool(done.any())
            self.resets[t + 1].copy_(done) if reset else self.resets[t + 1].zero_()
        return state, reset

    @property
    def saves_for_backward(self) -> bool:
        """Whether the steps save what backward() needs: asked for with save_for_backward=True,
        and the step fused (a fastrnn.LSTM on the cpp backend) without a projection."""
        return self.saved is not None

    def backward(self, grad_hidden: Tensor, grads: tuple | None = None) -> tuple:
        """The gradients of the LSTM layer's (w_ih, w_hh, b_ih, b_hh) (None for biases it lacks)
        from grad_hidden (T, B, R), the gradient of a loss with respect to each step's output
        hidden state (saved.hidden), back through the steps' recurrence to the state step 0
        started from. Needs every step 0..T-1 taken once, in order, each from the state the one
        before returned, on the weights the plan was made with (the steps saved the input rows
        they read: the caller may rewrite its buffers). grads: four tensors of the weights'
        shapes and dtype (None where absent, or to get new tensors) to write into, or None."""
        if self.saved is None:
            raise RuntimeError(f"{_NAME}: backward needs a plan made with save_for_backward=True on a fused step "
                               "(a fastrnn.LSTM that runs on the cpp backend, without proj_size)")
        self._chain.check_complete(self.steps)
        self._check_weights()
        expected = (self.steps, self.batch, self._state_shapes[0][2])
        if grad_hidden.shape != expected or grad_hidden.dtype != self._dtype or grad_hidden.device != self._device:
            raise ValueError(f"{_NAME}: grad_hidden must be {expected} {self._dtype} on {self._device}, got "
                             f"{tuple(grad_hidden.shape)} {grad_hidden.dtype} on {grad_hidden.device}")
        if grads is not None:
            _check_grads(grads, self._weights[:4])
        return sequence_backward(self._weights, self.saved, self._chain.initial, grad_hidden.contiguous(), grads)

    def _check_weights(self) -> None:
        if self._versions is not None and tuple(map(_version, self._sources)) != self._versions:
            raise RuntimeError(f"{_NAME}: the LSTM's weights or the head weight were modified since the "
                               "plan was made; make a new plan after each weight update")

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


class SavedSteps(NamedTuple):
    """What the fused steps save for backward, row t by step t (the sequence forward's layout)."""
    gates: Tensor    # (T, B, 4H) activated gates i, f, g, o
    cells: Tensor    # (T, B, H) c_t: step t returns row t as its new c
    hidden: Tensor   # (T, B, H) h_t, the step's output: step t returns row t as its new h
    applied: Tensor  # (T, B) bool: the rows whose state the step reset to zero first
    inputs: Tensor   # (T, B, I) the input row the step read (the caller may rewrite its own)
    previous: Tensor  # (T, B, H) h_{t-1} as step t read it, zero where it reset the state (W_hh's gradient
                      # multiplies it; kept by the step, where backward would rebuild it in two ops)

    @classmethod
    def allocate(cls, steps: int, batch: int, input_size: int, hidden_size: int, like: Tensor) -> "SavedSteps":
        def empty(*shape, dtype=like.dtype):
            return torch.empty(*shape, dtype=dtype, device=like.device)
        return cls(empty(steps, batch, 4 * hidden_size), empty(steps, batch, hidden_size),
                   empty(steps, batch, hidden_size), empty(steps, batch, dtype=torch.bool),
                   empty(steps, batch, input_size), empty(steps, batch, hidden_size))


class _Chain:
    """Whether the steps taken so far form one recurrence: 0, 1, 2, ... each from the state
    the one before returned (by identity: the plan's steps return rows of saved.hidden and
    saved.cells), none of those rows written since (their version counter: a state modified in
    place would no longer be what the steps read and saved), and the state step 0 started from
    (copied: the caller may write its tensors afterwards)."""

    def __init__(self, saved):
        self.saved = saved
        self.next_t, self.broken, self.initial, self.last, self.versions = 0, False, None, None, None

    def enter(self, t: int, h: Tensor, c: Tensor) -> None:
        if t == 0:
            self.next_t, self.broken, self.initial = 0, False, (h[0].clone(), c[0].clone())
        elif t != self.next_t or h is not self.last[0] or c is not self.last[1] or self._written():
            self.broken = True

    def leave(self, state: tuple[Tensor, Tensor]) -> None:
        self.next_t, self.last = self.next_t + 1, state
        self.versions = self.saved.hidden._version, self.saved.cells._version

    def ran(self, steps: int, state: tuple[Tensor, Tensor]) -> None:
        """Steps 0 to steps - 1 were taken in one run() from the state enter(0) saw."""
        self.broken = False
        self.next_t = steps - 1
        self.leave(state)

    def _written(self) -> bool:
        return (self.saved.hidden._version, self.saved.cells._version) != self.versions

    def check_complete(self, steps: int) -> None:
        if self.next_t == steps and not self.broken and self._written():
            self.broken = True
        if self.broken or self.next_t != steps:
            raise RuntimeError(f"{_NAME}: backward needs steps 0 to {steps - 1} taken once each, in order, each from "
                               f"the state the step before returned, unmodified; "
                               + ("they were not" if self.broken else f"{self.next_t} were taken"))


def _check_grads(grads, weights) -> None:
    """backward's grads: four tensors (or Nones) of the weights' shapes, dtype and device, contiguous."""
    if not isinstance(grads, (tuple, list)) or len(grads) != 4:
        raise ValueError(f"{_NAME}: grads must be four tensors or Nones (w_ih, w_hh, b_ih, b_hh), got {grads!r}")
    for name, grad, weight in zip(("w_ih", "w_hh", "b_ih", "b_hh"), grads, weights):
        if grad is None:
            continue
        if weight is None or grad.shape != weight.shape or grad.dtype != weight.dtype or grad.device != weight.device \
                or not grad.is_contiguous():
            expected = "None (the LSTM has no bias)" if weight is None else \
                f"a contiguous {tuple(weight.shape)} {weight.dtype} tensor on {weight.device}"
            raise ValueError(f"{_NAME}: grads' {name} must be {expected}, got {tuple(grad.shape)} {grad.dtype}")


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


_RUN_RESULT = "rollout_plan.run, env_step's result"


def _checked_env(env_step: Callable, input_row: Tensor, num_actions: int, num_signals: int) -> Callable:
    """env_step with its results checked as write_next_input checks its arguments (for a row
    like input_row), before the native loop reads them: (t, action) -> (obs, first signal or
    None, second or None, done)."""
    def checked(t, action):
        result = env_step(t, action)
        if not (isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], tuple)
                and len(result[1]) == num_signals):
            raise ValueError(f"{_RUN_RESULT} must be (obs, a tuple of {num_signals} signals, done or None), "
                             f"got {result!r}")
        obs, signals, done = result
        check_row_parts(input_row, obs, action, signals, num_actions, done, _RUN_RESULT)
        return (obs, *signals, *(None,) * (2 - num_signals), done)
    return checked
