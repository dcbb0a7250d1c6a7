"""Simulation 2: the learning rate follows volatility (Behrens et al. 2007; Wang et al. 2018 Fig. 3).

Two arms with anticorrelated reward probabilities p_0 = p, p_1 = 1 - p; a pull of arm a pays
1 with probability p_a. No observation and no trial index (it would let the network time the
phases): the agent sees only its previous action and reward.

An episode is a stable phase and a volatile phase in random order. Stable: one arm (drawn per
episode) pays with 0.75 throughout. Volatile: the better arm pays with 0.8, the other 0.2, and
they swap every 20-30 trials (uniform, unsignalled). Test episodes: 100 + 100 trials (ours,
after Behrens' ~120 stable and ~170 volatile trials reversing every 30-40); training draws each
phase's length from 80-120 so the network cannot time the switch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agent.simulations.base import BatchedTask
from agent.simulations.blocks import trial_grid
from agent.simulations.registry import register

STABLE_P, VOLATILE_P = 0.75, 0.8
SWAP_EVERY = (20, 30)
TEST_PHASE_TRIALS = (100, 100)
TRAIN_PHASE_TRIALS = (80, 120)
PHASES = ("stable", "volatile")


@register
class Volatility(BatchedTask):
    name = "volatility"
    description = ("volatility (Sim. 2): anticorrelated arms, a stable phase (0.75) and a volatile one (0.8/0.2 "
                   "swapping every 20-30 trials), 200 trials")
    obs_size = 0
    num_actions = 2
    trial_columns = ("phase", "action", "reward", "p_0", "p_1")
    column_labels = {"phase": PHASES}
    analysis_module = "agent.simulations.volatility.analysis"
    state_tensors = ("p_0", "volatile")
    # (ours) 200-trial episodes whose swaps come every 20-30 trials: an unroll of 20 would cut
    # the gradient inside most blocks; 40 covers one block and the trials that reveal its swap.
    # 192k episodes over 128 environments at RMSProp 2e-3 (ours): the agent comes to adapt its
    # learning rate to volatility beyond a fixed-hazard Bayesian learner (Simulation 2's
    # criterion) only late in training. At 20k, 32 environments, no seed of 3 did; at 192k all 5
    # seeds did, from 144k-168k on (results/reproduce/README.md, "What changed"). 128
    # environments step 1.6x the environment steps per second of 32 at this size.
    train_defaults = {"episodes": 192_000, "unroll": 40, "num_envs": 128, "lr": 2e-3}

    def __init__(self, num_envs: int, **kwargs):
        super().__init__(num_envs, **kwargs)
        lengths = TRAIN_PHASE_TRIALS if self.mode == "train" else TEST_PHASE_TRIALS
        self.stable_lengths = self.volatile_lengths = lengths
        if self.trials_override is not None:  # short episodes (verify, tests): the phases split it
            stable = self.trials_override // 2
            self.stable_lengths = (stable, stable)
            self.volatile_lengths = (self.trials_override - stable,) * 2
        self.max_trials = self.stable_lengths[1] + self.volatile_lengths[1] + 1
        # per row and trial of the episode: arm 0's reward probability and whether it is volatile
        self.p_0 = torch.zeros(num_envs, self.max_trials, device=self.device)
        self.volatile = torch.zeros(num_envs, self.max_trials, dtype=torch.bool, device=self.device)
        self._rows = torch.arange(num_envs, device=self.device)
        self._trial_grid = trial_grid(num_envs, self.max_trials, self.device)

    def _randint(self, low: int, high: int, *shape: int) -> Tensor:
        return torch.randint(low, high + 1, shape, generator=self.generator, device=self.device)

    def _new_episodes(self, rows: Tensor) -> None:
        B = self.num_envs
        # Every row's draws, in the order they have always been made (a seed plays the same
        # episodes); the tables are then built for the new rows only (usually one of 32).
        stable_len = self._randint(*self.stable_lengths, B)
        volatile_len = self._randint(*self.volatile_lengths, B)
        stable_first = self.rand(B) < 0.5
        # swaps: block ends counted from the volatile phase's start (enough blocks to cover it)
        blocks = self._randint(*SWAP_EVERY, B, self.volatile_lengths[1] // SWAP_EVERY[0] + 1)
        arm_0_better_first = self.rand(B) < 0.5  # in the volatile phase, before its first swap
        arm_0_better_stable = self.rand(B) < 0.5
        new = rows.nonzero().view(-1)
        t = self._trial_grid[: new.numel()]
        volatile_len, stable_len = volatile_len.index_select(0, new), stable_len.index_select(0, new)
        volatile_start = torch.where(stable_first.index_select(0, new), stable_len, 0).unsqueeze(1)
        in_volatile = (t >= volatile_start) & (t < volatile_start + volatile_len.unsqueeze(1))
        into_phase = (t - volatile_start).clamp(min=0)
        swaps = torch.searchsorted(blocks.index_select(0, new).cumsum(1), into_phase, right=True)
        arm_0_better_volatile = arm_0_better_first.index_select(0, new).unsqueeze(1) ^ (swaps % 2 == 1)
        p_0 = torch.where(in_volatile, torch.where(arm_0_better_volatile, VOLATILE_P, 1 - VOLATILE_P),
                          torch.where(arm_0_better_stable.index_select(0, new).unsqueeze(1), STABLE_P, 1 - STABLE_P))
        self.p_0.index_copy_(0, new, p_0)
        self.volatile.index_copy_(0, new, in_volatile)
        self.episode_trials.index_copy_(0, new, stable_len + volatile_len)

    def _advance(self, actions: Tensor):
        p_0 = self.p_0[self._rows, self.trial]
        chosen_prob = torch.where(actions == 0, p_0, 1 - p_0)
        reward = (self.rand(self.num_envs) < chosen_prob).float()
        record = None
        if self.recording:
            record = {"phase": self.volatile[self._rows, self.trial].long(), "action": actions, "reward": reward,
                      "p_0": p_0, "p_1": 1 - p_0}
        self.trial += 1
        return reward, self.every_row, record
