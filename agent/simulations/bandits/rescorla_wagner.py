"""Rescorla-Wagner learner with softmax choice: Q_a <- Q_a + alpha (r - Q_a) for the chosen arm,
P(a) = softmax(beta * Q). The default alpha, beta were chosen (ours) by a grid search for the
lowest regret at trial 100 on bandit_independent; this is the model-free, fixed-learning-rate
learner the meta-RL agent is contrasted with."""

from __future__ import annotations

import torch


class RescorlaWagnerSoftmax:
    name = "Rescorla-Wagner softmax"

    def __init__(self, learning_rate: float = 0.3, inverse_temperature: float = 10.0, initial_value: float = 0.5):
        self.learning_rate = learning_rate
        self.inverse_temperature = inverse_temperature
        self.initial_value = initial_value

    def reset(self, episodes: int, arms: int) -> None:
        self.values = torch.full((episodes, arms), self.initial_value, dtype=torch.float64)

    def choose(self, trial: int) -> torch.Tensor:
        probs = torch.softmax(self.inverse_temperature * self.values, dim=1)
        return torch.multinomial(probs, 1).squeeze(1)

    def update(self, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        index = actions.unsqueeze(1)
        chosen = self.values.gather(1, index).squeeze(1)
        self.values.scatter_(1, index, (chosen + self.learning_rate * (rewards - chosen)).unsqueeze(1))
