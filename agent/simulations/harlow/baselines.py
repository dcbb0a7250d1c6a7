"""A stimulus-blind strategy on the Harlow task (Simulation 5), as a step policy.

It fixates at every fixation step and chooses a side at every choice step without looking at
the images: trial 1 a random side, then win-stay/lose-shift on the side (the side that paid
again, else the other). With positions drawn independently per trial (the test default) side
carries no information and it scores 50% on every trial; with balanced positions
(--positions balanced) its score shows how much a side rule can get from the leak (the analysis'
stimulus-blind ceiling is the best such rule). It keeps no value estimate (value and RPE NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.simulations.harlow.task import FIXATE, LEFT, RIGHT
from agent.simulations.step_policy import StepPolicy


class StimulusBlind(StepPolicy):
    name = "stimulus_blind"
    description = "win-stay/lose-shift on the side, images ignored; trial 1 a random side"

    def reset(self, task, obs: Tensor) -> None:
        super().reset(task, obs)
        self.last_side = torch.full((task.num_envs,), -1, dtype=torch.long)  # LEFT or RIGHT, -1 before trial 1
        self.last_won = torch.zeros(task.num_envs, dtype=torch.bool)

    def act(self, obs: Tensor, task) -> tuple[Tensor, None]:
        if bool(obs[0, 0] > 0):  # the fixation mark: fixate (all rows share the stage)
            return torch.full((task.num_envs,), FIXATE, dtype=torch.long), None
        other = LEFT + RIGHT - self.last_side
        repeat = torch.where(self.last_won, self.last_side, other)
        first = LEFT + self.coin(task.num_envs)
        return torch.where(self.last_side < 0, first, repeat), None

    def learn(self, actions: Tensor, result, task) -> None:
        if bool(result.trial_end.any()):  # a choice step
            self.last_side = actions.clone()
            self.last_won = result.reward > 0
