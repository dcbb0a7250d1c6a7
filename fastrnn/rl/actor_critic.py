"""discounted_returns and actor_critic_loss: an actor-critic learning pass's arithmetic on the
heads' outputs, with the loss's gradient in closed form (csrc/rl_actor_critic.cpp).

With RolloutPlan.backward they make a learning pass without autograd: the heads' outputs
from the saved hidden states (one GEMM), the loss and d loss / d head outputs here (one native
call), the heads' and the LSTM's weight gradients by products (agent/core/learner.py). The
loss is A2C's (Mnih et al. 2016):

    L = L_policy + value_coef * L_value - entropy_coef * H
    L_policy = -sum_n w_n log pi(a_n | s_n) A_n,  A_n = G_n - V(s_n) (no gradient through A_n)
    L_value  = sum_n v_n 0.5 (G_n - V(s_n))^2,    H = sum_n w_n entropy(pi(. | s_n))

w_n = 1 / (rows in policy_mask) on its rows, 0 elsewhere (1 / N without a mask); v_n the same
with value_mask. CPU float32 and float64; sums in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from fastrnn import _C
from fastrnn.cpp_backend import DTYPE_CODES


_RETURNS, _LOSS = "discounted_returns", "actor_critic_loss"  # what errors name


class ActorCriticLoss(NamedTuple):
    total: float
    policy: float
    value: float
    entropy: float


def discounted_returns(rewards: Tensor, dones: Tensor, bootstrap: Tensor, gamma: float,
                       out: Tensor | None = None) -> Tensor:
    """G_t = r_t + gamma * G_{t+1}, cut where dones[t] (the episode ended with step t), and
    G_T = bootstrap for the episodes still running. rewards (T, B) float, dones (T, B) bool,
    bootstrap (B,) -> (T, B), written into `out` when given."""
    _check(_RETURNS, "rewards", rewards, 2, (torch.float32, torch.float64))
    steps, batch = rewards.shape
    _check(_RETURNS, "dones", dones, 2, (torch.bool,), (steps, batch))
    _check(_RETURNS, "bootstrap", bootstrap, 1, (rewards.dtype,), (batch,))
    out = torch.empty_like(rewards) if out is None else out
    _check(_RETURNS, "out", out, 2, (rewards.dtype,), (steps, batch))
    _C.discounted_returns(DTYPE_CODES[rewards.dtype], steps, batch, rewards, dones, bootstrap, float(gamma), out)
    return out


def actor_critic_loss(head_out: Tensor, actions: Tensor, returns: Tensor, num_actions: int, value_coef: float,
                      entropy_coef: float, policy_mask: Tensor | None = None, value_mask: Tensor | None = None,
                      grad_out: Tensor | None = None) -> tuple[ActorCriticLoss, Tensor]:
    """The loss above over the rows of head_out (..., K): policy logits in columns
    [0, num_actions), the value in column num_actions, K = num_actions + 1. actions (...) int64,
    returns (...) float, the masks (...) bool or None. Returns (the loss's parts as Python
    floats, d total / d head_out (..., K), written into grad_out when given)."""
    if type(num_actions) is not int or num_actions < 1:
        raise ValueError(f"actor_critic_loss: num_actions must be an int >= 1, got {num_actions!r}")
    _check(_LOSS, "head_out", head_out, None, (torch.float32, torch.float64))
    if head_out.dim() < 1 or head_out.shape[-1] != num_actions + 1:
        raise ValueError(f"actor_critic_loss: head_out must be (..., {num_actions + 1}): num_actions logits, then "
                         f"the value; got {tuple(head_out.shape)}")
    rows = head_out.shape[:-1]
    _check(_LOSS, "actions", actions, None, (torch.int64,), rows)
    _check(_LOSS, "returns", returns, None, (head_out.dtype,), rows)
    for name, mask in (("policy_mask", policy_mask), ("value_mask", value_mask)):
        if mask is not None:
            _check(_LOSS, name, mask, None, (torch.bool,), rows)
    grad_out = torch.empty_like(head_out) if grad_out is None else grad_out
    _check(_LOSS, "grad_out", grad_out, None, (head_out.dtype,), head_out.shape)
    parts = _C.actor_critic(DTYPE_CODES[head_out.dtype], head_out.numel() // head_out.shape[-1], head_out.shape[-1],
                            num_actions, head_out, actions, returns, policy_mask, value_mask, float(value_coef),
                            float(entropy_coef), grad_out)
    return ActorCriticLoss(*parts), grad_out


def _check(caller: str, name: str, tensor: Tensor, dims: int | None, dtypes: tuple, shape: tuple | None = None) -> None:
    """Raise ValueError unless `tensor` is a contiguous CPU tensor of one of `dtypes` (and of
    `dims` dimensions, and `shape`, where given): the native call reads it as a dense block."""
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{caller}: {name} must be a tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu" or tensor.dtype not in dtypes or not tensor.is_contiguous():
        raise ValueError(f"{caller}: {name} must be a contiguous CPU tensor of {' or '.join(map(str, dtypes))}, "
                         f"got {tensor.dtype} on {tensor.device}" + ("" if tensor.is_contiguous() else ", strided"))
    if (dims is not None and tensor.dim() != dims) or (shape is not None and tuple(tensor.shape) != tuple(shape)):
        raise ValueError(f"{caller}: {name} must be {tuple(shape) if shape is not None else f'{dims}-D'}, "
                         f"got {tuple(tensor.shape)}")
