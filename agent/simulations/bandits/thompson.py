"""Thompson sampling (Thompson 1933) for Bernoulli arms with a uniform Beta(1, 1) prior: draw
one sample from each arm's Beta posterior and pull the largest."""

from __future__ import annotations

import torch

from agent.simulations.bandits.runner import CountingPolicy


class ThompsonSampling(CountingPolicy):
    name = "Thompson sampling"

    def choose(self, trial: int) -> torch.Tensor:
        alpha = 1 + self.successes
        beta = 1 + self.pulls - self.successes
        return torch.distributions.Beta(alpha, beta).sample().argmax(dim=1)
