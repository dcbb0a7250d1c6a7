"""Simulation 4: the two-step task (Daw et al. 2011) with the paper's parameters.

A trial is two agent steps. Step 1, in state S1: the action (0 or 1) leads to second-stage
state S2 or S3; action 0 commonly (p = 0.8) to S2, action 1 commonly to S3, else the other
(rare). Step 2, in that second-stage state: the state pays reward 1 with probability 0.9 if
it is the "good" one and 0.1 otherwise; the agent must act to collect it but its action has
no effect (ours: the paper's second stage offers no choice). After each trial the good state
swaps with probability 0.025. 100 trials per episode. Observation: one-hot of the state the
agent is in (S1, S2, S3).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from agent.simulations.base import BatchedTask
from agent.simulations.registry import register
from agent.simulations.rpe import onset_rpe

COMMON_PROB = 0.8
GOOD_REWARD_PROB = 0.9
BAD_REWARD_PROB = 0.1
SWAP_PROB = 0.025
TRIALS_PER_EPISODE = 100


@register
class TwoStep(BatchedTask):
    name = "two_step"
    description = "Daw two-step task (Sim. 4): 0.8/0.2 transitions, 0.9/0.1 rewards, swap 0.025, 100 trials"
    obs_size = 3
    num_actions = 2
    steps_per_trial = 2
    # state: the second-stage state reached (0 = S2, 1 = S3); good_state: the rewarding one then.
    trial_columns = ("action", "reward", "state", "common", "good_state")
    # value: V at stage 1 (the choice); rpe: at the second-stage state's onset, gamma * V(stage 2)
    # - V(stage 1) (no reward between them): the RPE the paper splits by transition type.
    analysis_module = "agent.simulations.two_step.analysis"
    state_tensors = ("location", "first_action", "common", "good_state")
    state_scalars = ("stage",)
    # (ours) 30k episodes (6M steps, ~1-2 min on one CPU core): with 32 envs per update (~9.4k
    # updates) all five seeds we ran reached the paper's stay pattern (>= 0.99 after common-
    # rewarded and rare-unrewarded); a 10k-episode run stopped at ~0.87.
    train_defaults = {"episodes": 30_000}

    def __init__(self, num_envs: int, **kwargs):
        super().__init__(num_envs, **kwargs)
        B, dev = num_envs, self.device
        self.location = torch.zeros(B, dtype=torch.long, device=dev)  # 0 = S1, 1 = S2, 2 = S3
        self.first_action = torch.zeros(B, dtype=torch.long, device=dev)
        self.common = torch.zeros(B, dtype=torch.bool, device=dev)
        self.good_state = torch.zeros(B, dtype=torch.long, device=dev)  # 0 = S2, 1 = S3
        # Every trial is exactly two steps and episodes end only at trial ends, so all rows are
        # always at the same stage: one Python int instead of a per-row tensor and its where()s.
        self.stage = 0
        self._eye = torch.eye(3, device=dev)
        self._at_first_stage = self._eye[torch.zeros(B, dtype=torch.long, device=dev)]
        self._no_reward = torch.zeros(B, device=dev)
        # P(reward) by location ^ good_state: odd (1 ^ 0 = 1, 2 ^ 1 = 3) where the second-stage
        # state reached is the good one. One index instead of a subtraction, a compare and a where.
        self._reward_prob = torch.tensor([BAD_REWARD_PROB, GOOD_REWARD_PROB] * 2, device=dev)

    def _new_episodes(self, rows: Tensor) -> None:
        good = (self.rand(self.num_envs) < 0.5).long()
        self.good_state = torch.where(rows, good, self.good_state)
        self.episode_trials = torch.where(rows, self.draw_episode_lengths(TRIALS_PER_EPISODE, TRIALS_PER_EPISODE),
                                          self.episode_trials)
        self.location.masked_fill_(rows, 0)

    def derive_columns(self, trials: dict[str, np.ndarray], gamma: float) -> dict[str, np.ndarray]:
        return {"value": trials["value"], "rpe": onset_rpe(trials, gamma)}

    def observe(self) -> Tensor:
        return self._at_first_stage if self.stage == 0 else self._eye.index_select(0, self.location)

    def _advance(self, actions: Tensor):
        # Few ops per step (each costs microseconds at these sizes): integer tricks in place of where()s.
        if self.stage == 0:
            self.stage = 1
            self.common = self.rand(self.num_envs) < COMMON_PROB
            self.first_action = actions  # a fresh tensor per step; never written in place
            # action a leads commonly to second-stage state a: location 1 + a, rarely 1 + (1 - a);
            # a ^ common is 1 - a where common, a where rare, so 2 - (a ^ common) is that location.
            self.location = 2 - (actions ^ self.common)
            return self._no_reward, None, None  # None: no trial ends on a first-stage step
        self.stage = 0
        reward_draw, swap_draw = self.rand(2, self.num_envs).unbind()  # both draws in one op
        reward = (reward_draw < self._reward_prob.index_select(0, self.location ^ self.good_state)).float()
        record = None
        if self.recording:
            record = {"action": self.first_action, "reward": reward, "state": self.location - 1,
                      "common": self.common.long(), "good_state": self.good_state.clone()}
        self.good_state ^= swap_draw < SWAP_PROB  # in place: records and state_dict hold copies
        self.location = torch.zeros_like(self.location)
        self.trial += 1
        return reward, self.every_row, record
