"""Playing a bandit policy on a batch of episodes.

A policy has reset(episodes, arms), choose(trial) -> (E,) long, update(actions, rewards).
Randomness (rewards, and any the policy draws through torch's global generator, e.g. Beta
samples, which take no generator argument) runs inside a forked, seeded RNG: reproducible,
and the caller's global RNG is left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class BanditPlay:
    actions: Tensor  # (E, T) long
    rewards: Tensor  # (E, T) float
    regret: Tensor  # (E, T) expected regret per trial: max_a p_a - p_chosen


def play_bandit(policy, arm_probs: Tensor, trials: int, seed: int) -> BanditPlay:
    """arm_probs (E, A): each episode's fixed reward probabilities."""
    arm_probs = arm_probs.detach().to("cpu", torch.float64)
    episodes, arms = arm_probs.shape
    best = arm_probs.max(dim=1).values
    actions = torch.zeros(episodes, trials, dtype=torch.long)
    rewards = torch.zeros(episodes, trials, dtype=torch.float64)
    regret = torch.zeros(episodes, trials, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy.reset(episodes, arms)
        for t in range(trials):
            chosen = policy.choose(t)
            p = arm_probs.gather(1, chosen.unsqueeze(1)).squeeze(1)
            reward = (torch.rand(episodes, dtype=torch.float64) < p).to(torch.float64)
            policy.update(chosen, reward)
            actions[:, t], rewards[:, t], regret[:, t] = chosen, reward, best - p
    return BanditPlay(actions, rewards, regret)


class CountingPolicy:
    """Shared state: per-arm pull counts and reward sums for each episode."""

    def reset(self, episodes: int, arms: int) -> None:
        self.pulls = torch.zeros(episodes, arms, dtype=torch.float64)
        self.successes = torch.zeros(episodes, arms, dtype=torch.float64)

    def update(self, actions: Tensor, rewards: Tensor) -> None:
        index = actions.unsqueeze(1)
        self.pulls.scatter_add_(1, index, torch.ones_like(rewards).unsqueeze(1))
        self.successes.scatter_add_(1, index, rewards.unsqueeze(1))
