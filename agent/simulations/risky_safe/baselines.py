"""A Q-learner on the risky-vs-safe task (Simulation 6; Stopper et al. 2014), as a step policy.

Q per lever, learnt from every executed press, forced ones included (the task reports the lever
it pressed): delta = r - Q(lever) + offset, Q(lever) += alpha delta, P(lever) = softmax(beta Q)
on free trials (on a forced trial the offered lever, which the observation shows). offset is the
test-time manipulation's addition to the RPE (StepResult.rpe_offset; 0 in control): here the
manipulated dopamine signal is the learner's teaching signal, so any effect on later choices
goes through a value update, where the meta-RL agent's frozen weights cannot change (its RPE is
an input). Q starts at 1 (the safe lever's pay). value (trials.csv) = Q(pressed lever) before
the outcome; gamma 0, so rpe_raw = reward - Q and rpe_input adds the offset, what it learnt from.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.simulations.step_policy import DeltaRuleSoftmax

class QLearning(DeltaRuleSoftmax):
    name = "q_learning"
    description = "Q-learning softmax per lever (alpha 0.2, beta 2), the RPE manipulation added to its update"
    value_note = "Q of the pressed lever before its update (rpe_raw = reward - Q, gamma 0)"
    initial_value = 1.0

    def __init__(self, seed: int = 0, alpha: float = 0.2, beta: float = 2.0):
        super().__init__(seed, alpha, beta)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor]:
        free = obs.sum(1) > 1  # both levers offered
        actions = torch.where(free, self.softmax_choice(self.beta * self.q), obs.argmax(1))
        return actions, self.q[self.rows, actions]

    def learn(self, actions: Tensor, result, task) -> None:
        pressed = result.executed if result.executed is not None else actions
        delta = result.reward.double() - self.q[self.rows, pressed]
        if result.rpe_offset is not None:
            delta = delta + result.rpe_offset.double()
        self.q[self.rows, pressed] += self.alpha * delta
