"""A2C's two computations: n-step discounted returns and the actor-critic loss.

Loss (Wang et al. 2018; Mnih et al. 2016):
    L = L_policy + value_coef * L_value - entropy_coef * H
    L_policy = -mean(log pi(a_t | s_t) * A_t),  A_t = G_t - V(s_t) (no gradient through A_t)
    L_value  = mean(0.5 * (G_t - V(s_t))^2)
    H        = mean entropy of pi(. | s_t)
Means run over every step of every row in the unroll; RMSProp is nearly invariant to the
overall scale, so mean versus sum only changes the balance against rmsprop_eps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def discounted_returns_loop(rewards: Tensor, dones: Tensor, bootstrap_value: Tensor, gamma: float) -> Tensor:
    """The definition, one step at a time (T small ops each; the tests' oracle):
    G_t = r_t + gamma * G_{t+1}, cut where dones[t] (the episode ended at step t), and
    G_T = bootstrap_value (the value of the state after the unroll) for unfinished episodes.

    rewards (T, B) float, dones (T, B) bool, bootstrap_value (B,) -> (T, B).
    """
    returns = torch.empty_like(rewards)
    running = bootstrap_value
    continues = (~dones).to(rewards.dtype) * gamma
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + continues[t] * running
        returns[t] = running
    return returns


def discounted_returns(rewards: Tensor, dones: Tensor, bootstrap_value: Tensor, gamma: float) -> Tensor:
    """discounted_returns_loop in a fixed dozen ops instead of ~3T (dispatch dominates here):
    G_t = r_t + sum_{j >= t} D[t, j] * x_{j+1}, x = (r_1, ..., r_{T-1}, bootstrap), where
    D[t, j] = prod_{i=t..j} gamma * (1 - done_i) is a masked cumulative product, (T, T, B)."""
    steps = rewards.shape[0]
    continues = (~dones).to(rewards.dtype) * gamma
    upper = torch.ones(steps, steps, dtype=torch.bool, device=rewards.device).triu().unsqueeze(2)  # j >= t
    discounts = torch.where(upper, continues.unsqueeze(0), 1.0).cumprod(dim=1) * upper
    following = torch.cat([rewards[1:], bootstrap_value.unsqueeze(0)])
    return rewards + (discounts * following.unsqueeze(0)).sum(dim=1)


@dataclass
class A2CLoss:
    total: Tensor
    policy: Tensor
    value: Tensor
    entropy: Tensor


def a2c_loss(logits: Tensor, values: Tensor, actions: Tensor, returns: Tensor,
             value_coef: float, entropy_coef: float, policy_mask: Tensor | None = None,
             value_mask: Tensor | None = None) -> A2CLoss:
    """logits (T, B, A), values (T, B), actions (T, B) long, returns (T, B) (no gradient).
    policy_mask (T, B) bool: the steps the policy chose (forced steps excluded); the policy
    loss and the entropy average over those only. value_mask (T, B) bool: the steps the value
    loss averages over (steps the environment ignored excluded); None: every step."""
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    advantages = (returns - values).detach()
    entropies = -(log_probs.exp() * log_probs).sum(-1)
    if policy_mask is None:
        policy_loss = -(chosen * advantages).mean()
        entropy = entropies.mean()
    else:
        weight = policy_mask.to(logits.dtype) / policy_mask.sum().clamp(min=1)
        policy_loss = -(chosen * advantages * weight).sum()
        entropy = (entropies * weight).sum()
    if value_mask is None:
        value_loss = 0.5 * (returns - values).pow(2).mean()
    else:
        value_loss = 0.5 * ((returns - values).pow(2) * value_mask).sum() / value_mask.sum().clamp(min=1)
    total = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return A2CLoss(total, policy_loss, value_loss, entropy)
