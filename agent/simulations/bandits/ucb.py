"""UCB1 (Auer, Cesa-Bianchi & Fischer 2002): pull each arm once, then the arm maximizing
mean + sqrt(2 ln t / n_a), t the number of pulls so far."""

from __future__ import annotations

import math

import torch

from agent.simulations.bandits.runner import CountingPolicy


class UCB1(CountingPolicy):
    name = "UCB1"

    def choose(self, trial: int) -> torch.Tensor:
        episodes, arms = self.pulls.shape
        if trial < arms:
            return torch.full((episodes,), trial, dtype=torch.long)
        bonus = torch.sqrt(2 * math.log(trial) / self.pulls)
        return (self.successes / self.pulls + bonus).argmax(dim=1)
