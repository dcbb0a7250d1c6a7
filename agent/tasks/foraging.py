"""Simulation 1: dynamic foraging (Tsutsui et al. 2016), the baited two-armed task.

Each arm a has a base rate p0_a; its reward probability on a trial is 1 - (1 - p0_a)^(n_a + 1)
where n_a counts the trials since a was last chosen (0 if chosen on the previous trial), so
an unchosen arm accumulates ("baits") reward. The observation is empty: the agent sees only
its previous action and reward.
Training: 50-100 trials (uniform); p0_L from one of U(0, 0.1), U(0.2, 0.3), U(0.4, 0.5)
(chosen uniformly), p0_R = 0.5 - p0_L. Test: 100 trials, p0_L ~ U(0, 0.5), p0_R = 0.5 - p0_L.
Arm 0 is L, arm 1 is R.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.tasks.base import BatchedTask
from agent.tasks.registry import register

TRAIN_TRIALS = (50, 100)
TEST_TRIALS = (100, 100)
TRAIN_BASE_INTERVALS = torch.tensor([0.0, 0.2, 0.4])  # lower ends of the three U(lo, lo + 0.1)
BASE_RATE_SUM = 0.5


@register
class Foraging(BatchedTask):
    name = "foraging"
    description = "dynamic foraging (Sim. 1): baited two-armed task, base rates summing to 0.5, 50-100 trials"
    obs_size = 0
    num_actions = 2
    # p_0, p_1: the arms' (baited) reward probabilities on that trial; base_0, base_1: base rates.
    trial_columns = ("action", "reward", "p_0", "p_1", "base_0", "base_1")
    analysis_module = "agent.analysis.foraging"
    state_tensors = ("base_rates", "since_chosen")
    # (ours) 30k episodes (~2.3M steps, under a minute): 100k changed neither the matching slope
    # (0.47 -> 0.54) nor the reward per trial (0.433 -> 0.436) much.
    train_defaults = {"episodes": 30_000}

    def __init__(self, num_envs: int, **kwargs):
        super().__init__(num_envs, **kwargs)
        self.base_rates = torch.zeros(num_envs, 2, device=self.device)
        self.since_chosen = torch.zeros(num_envs, 2, device=self.device)  # n_a, float for pow
        self._all = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self._arms = torch.arange(2, device=self.device)

    def _new_episodes(self, rows: Tensor) -> None:
        B = self.num_envs
        if self.mode == "train":
            low = TRAIN_BASE_INTERVALS.to(self.device)[
                torch.randint(0, 3, (B,), generator=self.generator, device=self.device)]
            left = low + 0.1 * self.rand(B)
            lengths = self.draw_episode_lengths(*TRAIN_TRIALS)
        else:
            left = BASE_RATE_SUM * self.rand(B)
            lengths = self.draw_episode_lengths(*TEST_TRIALS)
        base = torch.stack([left, BASE_RATE_SUM - left], dim=1)
        self.base_rates = torch.where(rows.unsqueeze(1), base, self.base_rates)
        self.since_chosen = self.since_chosen.masked_fill(rows.unsqueeze(1), 0.0)
        self.episode_trials = torch.where(rows, lengths, self.episode_trials)

    def _advance(self, actions: Tensor):
        reward_probs = 1 - (1 - self.base_rates) ** (self.since_chosen + 1)
        chosen_prob = reward_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        reward = (self.rand(self.num_envs) < chosen_prob).float()
        record = None
        if self.recording:
            record = {"action": actions, "reward": reward, "p_0": reward_probs[:, 0], "p_1": reward_probs[:, 1],
                      "base_0": self.base_rates[:, 0].clone(), "base_1": self.base_rates[:, 1].clone()}
        chosen = actions.unsqueeze(1) == self._arms
        self.since_chosen = torch.where(chosen, 0.0, self.since_chosen + 1)
        self.trial += 1
        return reward, self._all, record
