"""A model-free TD learner on the reversal task (Simulation 3; Bromberg-Martin et al. 2010), as a
step policy: the control for the inference index.

It answers every cue with the cue's own action (always right; the task's behaviour needs no
more) and keeps three state values learnt by TD from what it experiences: V(fixation), V(cue 0),
V(cue 1). On the cue's onset: delta = gamma V(cue) - V(fixation), V(fixation) += alpha delta; on
the outcome: delta = r - V(cue), V(cue) += alpha delta (the trial ends there; gamma 1 within the
trial). A cue's value changes only when that cue is shown: after a reversal the other cue's
onset RPE at its first showing is still its old value's, so the inference index should be near 0
(the meta-RL agent's is well above). Values start at 0.5. value (trials.csv) = V(fixation),
value_last = V(cue shown); the task's rpe_cue = gamma V(cue) - V(fixation), its onset delta.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.simulations.step_policy import StepPolicy

INITIAL_VALUE = 0.5


class ModelFreeTD(StepPolicy):
    name = "model_free"
    description = "TD on experienced values only (alpha 0.5): a cue's value moves only when it is shown"
    gamma = 1.0
    value_note = "V(fixation) at the fixation step, V(cue shown) at the cue step; gamma 1 (rpe_cue = V(cue) - V(fix))"

    def __init__(self, seed: int = 0, alpha: float = 0.5):
        super().__init__(seed)
        self.alpha = alpha

    def parameters(self) -> dict:
        return {"alpha": self.alpha, "gamma": self.gamma, "initial_value": INITIAL_VALUE}

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        self.fixation = torch.full((task.num_envs,), INITIAL_VALUE, dtype=torch.float64)
        self.cue_values = torch.full((task.num_envs, 2), INITIAL_VALUE, dtype=torch.float64)
        self.cue = torch.zeros(task.num_envs, dtype=torch.long)

    def act(self, obs: Tensor, task) -> tuple[Tensor, Tensor]:
        if bool(obs[0, 0] > 0):  # fixation (all rows share the stage): the action has no effect
            return torch.zeros(task.num_envs, dtype=torch.long), self.fixation.clone()
        self.cue = obs[:, 1:].argmax(1)
        return self.cue.clone(), self.cue_values[self.rows, self.cue]

    def learn(self, actions: Tensor, result, task) -> None:
        if not bool(result.trial_end.any()):  # fixation step: the cue now shown is in result.obs
            cue = result.obs[:, 1:].argmax(1)
            self.fixation += self.alpha * (self.gamma * self.cue_values[self.rows, cue] - self.fixation)
            return
        chosen = self.cue_values[self.rows, self.cue]
        self.cue_values[self.rows, self.cue] = chosen + self.alpha * (result.reward.double() - chosen)
