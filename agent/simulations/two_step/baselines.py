"""Classical learners on the two-step task (Simulation 4; Daw et al. 2011), as step policies.

Both act on the task's observations alone: the first-stage observation is S1's one-hot, the
second-stage one says which state (S2 or S3) was reached; the second stage offers no choice
(action 0). What they know of the task beyond that is said per learner.

- model_free: Daw et al.'s SARSA(lambda) without a model. Stage-1 values Q1(a), stage-2 values
  Q2(s). On reaching s: delta1 = Q2(s) - Q1(a), Q1(a) += alpha delta1; on the reward:
  delta2 = r - Q2(s), Q2(s) += alpha delta2, Q1(a) += alpha lambda delta2. With lambda = 1,
  Q1(a) moves by alpha (r - Q1(a)) whatever the transition: reward drives staying, the
  transition does not (no reward x transition interaction).
- model_based: knows the transition structure (action a leads to state a commonly, p 0.8),
  learns Q2(s) by delta2 as above, and plans Q_MB(a) = 0.8 Q2(common(a)) + 0.2 Q2(rare(a)): a
  reward after a rare transition raises the other action's value (the interaction).
Choice: P(a) = softmax(beta Q(a) + persev [a = previous stage-1 action]); persev 0 by default.
Values start at 0.5. value (trials.csv) = Q1(chosen) (model-free) or Q_MB(chosen) at stage 1,
value_last = Q2(state reached); gamma 1, so the task's onset RPE is V(stage 2) - Q(stage 1),
the model-free learner's delta1 and, for model_based, the surprise of the transition.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.simulations.step_policy import StepPolicy
from agent.simulations.two_step.task import COMMON_PROB

INITIAL_VALUE = 0.5


class _TwoStepLearner(StepPolicy):
    gamma = 1.0
    value_note = ("stage 1: the chosen action's value; stage 2: Q2 of the state reached; gamma 1 (onset rpe = "
                  "Q2(s) - Q(a))")

    def __init__(self, seed: int = 0, alpha: float = 0.5, beta: float = 5.0, perseveration: float = 0.0):
        super().__init__(seed)
        self.alpha, self.beta, self.perseveration = alpha, beta, perseveration

    def parameters(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "perseveration": self.perseveration}

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        B = task.num_envs
        self.q1 = torch.full((B, 2), INITIAL_VALUE, dtype=torch.float64)
        self.q2 = torch.full((B, 2), INITIAL_VALUE, dtype=torch.float64)
        self.previous = torch.full((B,), -1, dtype=torch.long)
        self.first_action = torch.zeros(B, dtype=torch.long)
        self.state = torch.zeros(B, dtype=torch.long)

    def stage_one_values(self) -> Tensor:
        raise NotImplementedError

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor]:
        if bool(obs[0, 0] > 0):  # S1: the stage-1 choice (all rows share the stage)
            values = self.stage_one_values()
            stay_bonus = torch.nn.functional.one_hot(self.previous.clamp(min=0), 2) * (self.previous >= 0).unsqueeze(1)
            actions = self.softmax_choice(self.beta * values + self.perseveration * stay_bonus)
            self.first_action = actions
            return actions, values[self.rows, actions]
        self.state = obs[:, 1:].argmax(1)  # 0 = S2, 1 = S3
        return torch.zeros_like(self.state), self.q2[self.rows, self.state]

    def learn(self, actions: Tensor, result, task) -> None:
        if not bool(result.trial_end.any()):  # the stage-1 step: the state reached is in result.obs
            self.on_transition(result.obs[:, 1:].argmax(1))
            return
        a, s = self.first_action, self.state
        delta2 = result.reward.double() - self.q2[self.rows, s]
        self.q2[self.rows, s] += self.alpha * delta2
        self.on_reward(delta2)
        self.previous = a

    def on_transition(self, state: Tensor) -> None:
        pass

    def on_reward(self, delta2: Tensor) -> None:
        pass


class ModelFreeTD(_TwoStepLearner):
    name = "model_free"
    description = "SARSA(lambda) without a model (Daw et al. 2011): alpha 0.5, lambda 1, beta 5, no perseveration"

    def __init__(self, seed: int = 0, alpha: float = 0.5, lam: float = 1.0, beta: float = 5.0,
                 perseveration: float = 0.0):
        super().__init__(seed, alpha, beta, perseveration)
        self.lam = lam

    def parameters(self) -> dict:
        return {**super().parameters(), "lambda": self.lam}

    def stage_one_values(self) -> Tensor:
        return self.q1

    def on_transition(self, state: Tensor) -> None:
        a = self.first_action
        self.q1[self.rows, a] += self.alpha * (self.q2[self.rows, state] - self.q1[self.rows, a])

    def on_reward(self, delta2: Tensor) -> None:
        self.q1[self.rows, self.first_action] += self.alpha * self.lam * delta2


class ModelBased(_TwoStepLearner):
    name = "model_based"
    description = ("model-based planner: knows the 0.8/0.2 transitions, learns second-stage values (alpha 0.5), "
                   "beta 5, no perseveration")

    def parameters(self) -> dict:
        return {**super().parameters(), "common_prob": COMMON_PROB}

    def stage_one_values(self) -> Tensor:
        # action a leads commonly to state a: Q_MB(a) = p Q2(a) + (1 - p) Q2(1 - a)
        return COMMON_PROB * self.q2 + (1 - COMMON_PROB) * self.q2.flip(1)
