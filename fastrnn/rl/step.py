"""rollout_step and rollout_plan: an LSTM step followed by a linear readout and a greedy choice.

What a reinforcement-learning rollout does per environment step: one no-grad LSTM step, the
policy and value heads as one linear readout, and the action as the argmax of the policy
logits plus Gumbel noise (a sample of the softmax). On the cpp backend it is one native call
(fastrnn/rl/cpp.py); elsewhere (reference, triton, torch.nn.LSTM itself) the LSTM's own step,
one addmm and one argmax, with the same results.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
from torch import Tensor

from fastrnn import dispatch
from fastrnn.torch_compat import current_flat_weights, refreshed_flat_weights
from fastrnn.rl import cpp
from fastrnn.rl.plan import RolloutPlan

_STEP = "rollout_step"


def rollout_step(lstm: nn.LSTM, x: Tensor, state: tuple[Tensor, Tensor], head_weight: Tensor, head_addend: Tensor,
                 num_actions: int, resets: Tensor | None = None):
    """One no-grad time step of `lstm` (a fastrnn.LSTM or a torch.nn.LSTM, one layer,
    unidirectional), then ``head_out = h_n[0] head_weight + head_addend`` and the greedy choice.

    x (B, I); state (h, c), (1, B, R) and (1, B, H), as the LSTM's forward takes and returns
    them; head_weight (R, K); head_addend (B, K): the readout's bias, plus Gumbel noise to
    sample (argmax(logits + Gumbel noise) is a draw from softmax(logits)); resets (B,) bool,
    or None: those rows start from a zero state. Outside autograd (torch.no_grad()).

    Returns (actions, head_out, (h_n, c_n)): actions (B,) int64, the first index of the
    largest of each row's first num_actions outputs (torch.argmax's choice); head_out (B, K);
    the new state as forward returns it.
    """
    weights = layer_weights(lstm)
    if not _fits(lstm, x, state, head_weight, head_addend, num_actions, resets, weights):
        _raise_misfit(lstm, x, state, head_weight, head_addend, num_actions, resets, weights)
    h, c = state
    if _runs_cpp(lstm, x, weights):
        h_n, c_n, head_out, actions = cpp.step_heads(x, h, c, weights, resets, head_weight, head_addend, num_actions)
        return actions, head_out, (h_n, c_n)
    h_n, c_n = _lstm_step(lstm, x, h, c, weights, resets)
    head_out = torch.addmm(head_addend, h_n.reshape(-1, h_n.shape[-1]), head_weight)
    choices = head_out if num_actions == head_out.shape[1] else head_out[:, :num_actions]
    return choices.argmax(dim=-1), head_out, (h_n, c_n)


def rollout_plan(lstm: nn.LSTM, inputs: Tensor, head_weight: Tensor, head_addends: Tensor, num_actions: int,
                 resets: Tensor | None = None, actions: Tensor | None = None,
                 head_out: Tensor | None = None, save_for_backward: bool = False) -> RolloutPlan:
    """rollout_step over a whole rollout's buffers, checked and bound once (plan.py).

    inputs (T', B, I) and resets (T', B) bool, T' >= T: step t reads row t, which the caller
    may write after making the plan (the next input comes from the environment); head_addends
    (T, B, K); actions (T, B) int64 and head_out (T, B, K): where step t writes, allocated by
    the plan (plan.actions, plan.head_out) when not given. All on the weights' device and
    dtype, and all but head_weight contiguous.
    plan.step(t, (h, c), reset=False) -> (h_n, c_n) equals rollout_step(lstm, inputs[t], (h, c),
    head_weight, head_addends[t], num_actions, resets[t] if reset else None), bit for bit, with
    actions[t] and head_out[t] filled. The plan keeps the weights it was made with; a step
    raises if they or head_weight were modified in place since, or if a buffer was moved to
    other memory (resize_, set_).
    save_for_backward: the steps also keep what plan.backward(grad_hidden) needs to give the
    weights' gradients of a loss on the steps' hidden states (plan.saved.hidden), where the
    step is fused (plan.saves_for_backward says whether it is).
    """
    if lstm.num_layers != 1 or lstm.bidirectional:
        raise ValueError(f"rollout_plan: one-layer unidirectional LSTMs only (num_layers={lstm.num_layers}, "
                         f"bidirectional={lstm.bidirectional})")
    weights = layer_weights(lstm)
    bind = cpp.bind_step_heads if _runs_cpp(lstm, inputs, weights, mode="plan") else None
    sizes = (lstm.input_size, lstm.proj_size or lstm.hidden_size, lstm.hidden_size)
    return RolloutPlan(functools.partial(rollout_step, lstm), functools.partial(_lstm_step, lstm), sizes, weights,
                       inputs, head_weight, head_addends, num_actions, resets, actions, head_out, bind,
                       save_for_backward)


def layer_weights(lstm: nn.LSTM) -> tuple:
    """(w_ih, w_hh, b_ih, b_hh, w_hr) of the first layer, None where absent, as the LSTM's
    forward would read them now (a swapped or parametrized parameter included)."""
    if hasattr(lstm, "_layer_weights"):  # fastrnn.LSTM: the fast form
        return lstm._layer_weights(current_flat_weights(lstm), 0)
    flat = refreshed_flat_weights(lstm)
    w_ih, w_hh = flat[0], flat[1]
    b_ih, b_hh = (flat[2], flat[3]) if lstm.bias else (None, None)
    return w_ih, w_hh, b_ih, b_hh, flat[-1] if lstm.proj_size > 0 else None


def _step_route(lstm: nn.LSTM, probe: Tensor, weights, mode: str = "step") -> str | None:
    """What a fastrnn.LSTM runs this no-grad step on (fastrnn.dispatch; recorded as its
    last_backend), or None for a torch.nn.LSTM. mode "plan": steps bound once (rollout_plan)."""
    if not hasattr(lstm, "_route"):
        return None
    w_ih, w_hh, _, _, w_hr = weights
    return lstm._route(probe.device, probe.dtype, mode, False, lstm.hidden_size, lstm.proj_size or lstm.hidden_size,
                       probe.shape[-2], dispatch.step_weight_bytes(w_ih, w_hh, w_hr), False, False)


def _runs_cpp(lstm: nn.LSTM, probe: Tensor, weights, mode: str = "step") -> bool:
    """Whether a fastrnn.LSTM runs this step on the cpp backend's packed step."""
    return not torch.compiler.is_compiling() and _step_route(lstm, probe, weights, mode) == "cpp"


def _lstm_step(lstm: nn.LSTM, x, h, c, weights, resets):
    """The LSTM's own no-grad step: the cell fastrnn.dispatch picks, or torch's forward on a
    state zeroed where resets (nn.LSTM has no resets)."""
    implementation = _step_route(lstm, x, weights)
    if implementation is not None:
        return dispatch.step_function(implementation)(x, h, c, *weights, resets)
    if resets is not None:
        reset = resets.view(1, -1, 1)
        h, c = torch.where(reset, 0.0, h), torch.where(reset, 0.0, c)
    _, (h_n, c_n) = nn.LSTM.forward(lstm, x.unsqueeze(0), (h, c))
    return h_n, c_n


def _needs_grad(tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _fits(lstm, x, state, head_weight, head_addend, num_actions, resets, weights) -> bool:
    """Every rollout_step argument as expected (the rollout's calls: one comparison chain)."""
    h, c = state
    batch = x.shape[0] if x.dim() == 2 else -1
    out_size = lstm.proj_size or lstm.hidden_size
    return (lstm.num_layers == 1 and not lstm.bidirectional and not _needs_grad((x, *weights))
            and x.dim() == 2 and x.shape[1] == lstm.input_size
            and h.shape == (1, batch, out_size) and c.shape == (1, batch, lstm.hidden_size)
            and head_weight.dim() == 2 and head_weight.shape[0] == out_size
            and head_addend.shape == (batch, head_weight.shape[1])
            and type(num_actions) is int and 1 <= num_actions <= head_weight.shape[1]
            and (resets is None or (resets.shape == (batch,) and resets.dtype == torch.bool))
            and x.dtype == h.dtype == c.dtype == head_weight.dtype == head_addend.dtype == weights[0].dtype
            and x.device == h.device == c.device == head_weight.device == head_addend.device
            == weights[0].device)


def _raise_misfit(lstm, x, state, head_weight, head_addend, num_actions, resets, weights):
    """Raise the error naming the first rollout_step argument that is not as expected."""
    if lstm.num_layers != 1 or lstm.bidirectional:
        raise ValueError(f"{_STEP}: one-layer unidirectional LSTMs only (num_layers={lstm.num_layers}, "
                         f"bidirectional={lstm.bidirectional})")
    if _needs_grad((x, *weights)):
        raise RuntimeError(f"{_STEP} computes no gradient: call it under torch.no_grad()")
    out_size = lstm.proj_size or lstm.hidden_size
    if x.dim() != 2 or x.shape[1] != lstm.input_size:
        raise ValueError(f"{_STEP}: x must be (batch, {lstm.input_size}), got {tuple(x.shape)}")
    batch = x.shape[0]
    h, c = state
    for label, tensor, width in (("state[0]", h, out_size), ("state[1]", c, lstm.hidden_size)):
        if tensor.shape != (1, batch, width):
            raise ValueError(f"{_STEP}: {label} must be (1, {batch}, {width}), got {tuple(tensor.shape)}")
    if head_weight.dim() != 2 or head_weight.shape[0] != out_size:
        raise ValueError(f"{_STEP}: head_weight must be ({out_size}, outputs), got {tuple(head_weight.shape)}")
    if head_addend.shape != (batch, head_weight.shape[1]):
        raise ValueError(f"{_STEP}: head_addend must be ({batch}, {head_weight.shape[1]}), "
                         f"got {tuple(head_addend.shape)}")
    if type(num_actions) is not int or not 1 <= num_actions <= head_weight.shape[1]:
        raise ValueError(f"{_STEP}: num_actions must be an int from 1 to {head_weight.shape[1]}, got {num_actions!r}")
    if resets is not None and (resets.shape != (batch,) or resets.dtype != torch.bool):
        raise ValueError(f"{_STEP}: resets must be a ({batch},) bool tensor, got {tuple(resets.shape)} {resets.dtype}")
    tensors = {"x": x, "state[0]": h, "state[1]": c, "head_weight": head_weight, "head_addend": head_addend}
    for label, tensor in tensors.items():
        if tensor.dtype != weights[0].dtype or tensor.device != weights[0].device:
            raise ValueError(f"{_STEP}: {label} is {tensor.dtype} on {tensor.device}; the LSTM's weights are "
                             f"{weights[0].dtype} on {weights[0].device}")
