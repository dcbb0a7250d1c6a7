"""Classical learners on the volatility task (Simulation 2; Behrens et al. 2007), as step policies.

Both see only their own actions and rewards (the task has no observation) and keep one learning
rule through the whole episode: neither can raise its learning rate in the volatile phase, so
the analysis' per-phase Rescorla-Wagner fit should find the same rate in both phases. That is
the control: the meta-RL agent's criterion (alpha volatile > alpha stable) must fail here.

- rescorla_wagner: Q_a += alpha (r - Q_a) for the chosen arm, one fixed alpha; P(a) =
  softmax(beta Q); Q starts at 0.5 (the analysis' starting value).
- bayes_fixed_hazard: a Bayesian reversal learner. Hidden state z: which arm is the better one;
  it knows the arms are anticorrelated and that the better one pays `q` (0.8, the volatile
  phase's; the stable phase's 0.75 is not modelled), and assumes the better arm swaps with a
  fixed probability `hazard` per trial (0.025: about the test episode's average, four to five
  swaps in 200 trials). Posterior after each outcome, then the hazard's mixing; P(a) =
  softmax(beta E[r | a]).
value (trials.csv): the chosen arm's Q or expected reward before the outcome; gamma 0, so the
derived rpe is reward - value, the learner's prediction error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.simulations.step_policy import DeltaRuleSoftmax, StepPolicy

class RescorlaWagner(DeltaRuleSoftmax):
    name = "rescorla_wagner"
    description = "Rescorla-Wagner softmax with one fixed learning rate (alpha 0.3, beta 5)"
    value_note = "Q of the chosen arm before its update (rpe = reward - Q, gamma 0)"


class BayesFixedHazard(StepPolicy):
    name = "bayes_fixed_hazard"
    description = ("Bayesian reversal learner with a fixed hazard (0.025 per trial), better arm paying 0.8, "
                   "softmax beta 10 on expected reward")
    value_note = "expected reward of the chosen arm under the belief before the outcome (rpe = reward - value)"

    def __init__(self, seed: int = 0, hazard: float = 0.025, q: float = 0.8, beta: float = 10.0):
        super().__init__(seed)
        self.hazard, self.q, self.beta = hazard, q, beta

    def parameters(self) -> dict:
        return {"hazard": self.hazard, "better_arm_reward_prob": self.q, "beta": self.beta}

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        self.belief = torch.full((task.num_envs,), 0.5, dtype=torch.float64)  # P(arm 0 is the better one)

    def expected_rewards(self) -> Tensor:
        p0 = self.belief * self.q + (1 - self.belief) * (1 - self.q)
        return torch.stack([p0, 1 - p0], dim=1)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor]:
        expected = self.expected_rewards()
        actions = self.softmax_choice(self.beta * expected)
        return actions, expected[self.rows, actions]

    def learn(self, actions: Tensor, result, task) -> None:
        # P(r | arm 0 better) and P(r | arm 1 better) for the arm pulled
        pays_if_0_better = torch.where(actions == 0, self.q, 1 - self.q).double()
        rewarded = result.reward.double() > 0
        like_0 = torch.where(rewarded, pays_if_0_better, 1 - pays_if_0_better)
        like_1 = torch.where(rewarded, 1 - pays_if_0_better, pays_if_0_better)
        posterior = self.belief * like_0 / (self.belief * like_0 + (1 - self.belief) * like_1)
        self.belief = (1 - self.hazard) * posterior + self.hazard * (1 - posterior)
