"""Classical learners that play a batched task step by step, the way the frozen agent does
(`python -m agent baseline`, agent/baselines/play.py): one row per test episode, an action per
row each step, the step's outcome fed back.

A policy:
  reset(task, obs)              before the first step (task.reset() already called)
  act(obs, task) -> (actions, value)
                                 actions (B,) long; value (B,) float, the learner's own estimate
                                 for this step (see below), or None where it keeps none
  learn(actions, result, task)   after task.step(actions): result is the StepResult
and the class attributes `name`, `description`, `gamma` and `value_note`.

Values. The agent's trials.csv holds the value head's estimate at a trial's first step
(`value`) and last step (`value_last`), from which the task's derive_columns makes its RPE
columns with the discount gamma. A learner fills the same two slots with the value of what it
is about to do (the chosen action's value: its own prediction for this step), and its `gamma` is
its own discount, so that the derived RPE is the learner's own prediction error: 0 for
one-step-trial learners (values are expected rewards; rpe = r - Q(chosen)), 1 for the
two-step-trial TD learners (no discount within a trial; onset rpe = V(stage 2) - Q(stage 1)).
A learner without value estimates (win-stay/lose-shift, the foraging oracles) leaves both NaN,
and so are the RPE columns.

Randomness: a policy draws only from its own generator (seeded), never from the task's, so the
task's draws, and with them the test episodes, are those `agent eval` plays for the same seed.
Policies written for whole trials (agent/simulations/foraging/baselines.py's strategies, the
bandit policies of agent/simulations/bandits/) are adapted here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class StepPolicy:
    name = ""
    description = ""
    gamma = 0.0  # discount of the learner's own values; derive_columns' gamma
    value_note = "none: the learner keeps no value estimate (value and RPE columns are NaN)"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def parameters(self) -> dict:
        return {}

    def reset(self, task, obs: Tensor) -> None:
        self.rows = torch.arange(task.num_envs)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def learn(self, actions: Tensor, result, task) -> None:
        pass

    # ---- helpers ---------------------------------------------------------------------------
    def softmax_choice(self, logits: Tensor) -> Tensor:
        """(B,) long: one action per row drawn from softmax(logits) with the policy's generator."""
        probs = torch.softmax(logits.double(), dim=1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def coin(self, n: int) -> Tensor:
        return (torch.rand(n, generator=self.generator) < 0.5).long()


class TrialStrategy(StepPolicy):
    """A foraging strategy of agent/simulations/foraging/baselines.py (reset(episodes),
    choose(task), update(actions, rewards)) as a step policy; those strategies draw from their
    own numpy generator, seeded. `value`: the Q-learner's value of the chosen arm, NaN for the rest."""

    def __init__(self, strategy, name: str, description: str, seed: int = 0, parameters: dict | None = None):
        super().__init__(seed)
        self.strategy, self.name, self.description = strategy, name, description
        self._parameters = parameters or {}
        if hasattr(strategy, "alpha"):
            self.value_note = "Q of the chosen arm before its update (rpe = reward - Q, gamma 0)"

    def parameters(self) -> dict:
        return dict(self._parameters)

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        self.strategy.reset(task.num_envs)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor | None]:
        actions = self.strategy.choose(task)
        values = getattr(self.strategy, "values", None)
        value = None if values is None else torch.from_numpy(values[np.arange(len(actions)), actions.numpy()].copy())
        return actions, value

    def learn(self, actions: Tensor, result, task) -> None:
        self.strategy.update(actions, result.reward)


class BanditStrategy(StepPolicy):
    """A bandit policy of agent/simulations/bandits (reset(episodes, arms), choose(trial),
    update(actions, rewards) on float64) as a step policy. Thompson sampling and the Rescorla-Wagner softmax draw
    from torch's global generator; play.py seeds it inside a forked RNG state. `value`: the
    chosen arm's Beta(1, 1) posterior mean for the counting policies (Thompson, UCB1, Gittins),
    its Q for Rescorla-Wagner; gamma 0 (rpe = reward - value)."""

    value_note = ("the chosen arm's value before the update: Beta(1, 1) posterior mean (counting policies) "
                  "or Q (Rescorla-Wagner); rpe = reward - value (gamma 0)")

    def __init__(self, policy, name: str, description: str, seed: int = 0, parameters: dict | None = None):
        super().__init__(seed)
        self.policy, self.name, self.description = policy, name, description
        self._parameters = parameters or {}

    def parameters(self) -> dict:
        return dict(self._parameters)

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        self.policy.reset(task.num_envs, task.num_actions)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor | None]:
        trial = int(task.trial[0])  # test episodes run in lockstep from trial 0
        actions = self.policy.choose(trial)
        if hasattr(self.policy, "values"):
            value = self.policy.values[self.rows, actions]
        else:
            pulls = self.policy.pulls[self.rows, actions]
            value = (1 + self.policy.successes[self.rows, actions]) / (2 + pulls)
        return actions, value

    def learn(self, actions: Tensor, result, task) -> None:
        self.policy.update(actions, result.reward.to(torch.float64))


class DeltaRuleSoftmax(StepPolicy):
    """A value per action, chosen by softmax(beta Q), the chosen one moved toward the reward
    with a fixed learning rate (Rescorla-Wagner; Q-learning on one-step trials)."""
    value_note = "Q of the chosen action before its update (rpe = reward - Q, gamma 0)"
    initial_value = 0.5

    def __init__(self, seed: int = 0, alpha: float = 0.3, beta: float = 5.0):
        super().__init__(seed)
        self.alpha, self.beta = alpha, beta

    def parameters(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "initial_value": self.initial_value}

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        self.q = torch.full((task.num_envs, task.num_actions), self.initial_value, dtype=torch.float64)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor]:
        actions = self.softmax_choice(self.beta * self.q)
        return actions, self.q[self.rows, actions]

    def learn(self, actions: Tensor, result, task) -> None:
        chosen = self.q[self.rows, actions]
        self.q[self.rows, actions] = chosen + self.alpha * (result.reward.double() - chosen)
