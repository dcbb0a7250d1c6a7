"""Simulation 3: RPEs reflect inferred value (Bromberg-Martin et al. 2010; Wang et al. 2018 Fig. 4).

Two cues; one is big (a correct answer pays 1.0), the other small (0.2); which is which
reverses without signal between blocks of 15-35 trials (ours), 100 trials per episode, the
first block's big cue drawn per episode. A trial is two agent steps:
  1. fixation: the observation shows only the fixation mark; reward 0, the action has no
     effect (ours: all rows stay in lockstep, one shared stage like two_step);
  2. cue: one cue at random (50/50), as a one-hot; answering with the cue's own action (cue 0
     -> action 0) pays the cue's current size, any other answer 0.
Observation: [fixation mark, cue 0, cue 1].

Pressing the shown cue's action is always right, so a cue-blind policy earns half of the
reward (0.3 per trial against 0.6) and the mapping is irrelevant to behaviour: only the value
estimate needs it. What the simulation measures is whether that value estimate, and the cue-
onset RPE computed from it, follows the reversal for a cue not yet seen since it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from agent.simulations.base import BatchedTask
from agent.simulations.blocks import block_schedule, trial_grid
from agent.simulations.registry import register
from agent.simulations.rpe import onset_rpe

BIG_REWARD, SMALL_REWARD = 1.0, 0.2
BLOCK_TRIALS = (15, 35)
TRIALS_PER_EPISODE = 100


@register
class Reversal(BatchedTask):
    name = "reversal"
    description = ("reversal (Sim. 3): two cues, big 1.0 / small 0.2, the mapping reversing unsignalled every "
                   "15-35 trials, fixation + cue steps, 100 trials")
    obs_size = 3
    num_actions = 2
    steps_per_trial = 2
    # cue: the cue shown (0/1); big_cue: the cue that pays 1.0 on this trial (0/1);
    # trials_since_reversal: 0 on a block's first trial (the first block counts from the episode's start).
    trial_columns = ("cue", "big_cue", "trials_since_reversal", "action", "reward")
    derived_columns = ("value_fixation", "value_cue", "rpe_cue")
    analysis_module = "agent.simulations.reversal.analysis"
    state_tensors = ("big_cue", "block_start", "cue")
    state_scalars = ("stage",)
    # (ours) 40k episodes (8M steps, ~4 min on one core). Behaviour is learnt in ~1k episodes
    # (answering the cue is all it takes); the value estimate's inference comes much later. One
    # 60k-episode seed, evaluated at tenths of training (inference index, 200 test episodes):
    # 0.57 at 12k, 0.41 at 18k, 0.72 at 30k, 0.91 at 42k, 0.97 at 60k; a 20k run stopped at 0.31,
    # integrating rewards over ~5 trials for both cues instead of inferring.
    train_defaults = {"episodes": 40_000}

    def __init__(self, num_envs: int, **kwargs):
        super().__init__(num_envs, **kwargs)
        B, dev = num_envs, self.device
        self.max_trials = max(TRIALS_PER_EPISODE, self.trials_override or 0)
        # per row and trial of the episode: the big cue and the trial its block started on
        self.big_cue = torch.zeros(B, self.max_trials, dtype=torch.long, device=dev)
        self.block_start = torch.zeros(B, self.max_trials, dtype=torch.long, device=dev)
        self.cue = torch.zeros(B, dtype=torch.long, device=dev)  # the cue of the current trial
        self.stage = 0  # 0 fixation, 1 cue: every trial is two steps, so all rows share it
        self._eye = torch.eye(3, device=dev)
        self._fixation_obs = self._eye[torch.zeros(B, dtype=torch.long, device=dev)]
        self._no_reward = torch.zeros(B, device=dev)
        self._rows = torch.arange(B, device=dev)
        self._trial_grid = trial_grid(B, self.max_trials, dev)

    def _new_episodes(self, rows: Tensor) -> None:
        B = self.num_envs
        low, high = BLOCK_TRIALS
        # Every row's draws (a seed plays the same episodes); the tables for the new rows only.
        lengths = torch.randint(low, high + 1, (B, self.max_trials // low + 1), generator=self.generator,
                                device=self.device)
        first_big = (self.rand(B) < 0.5).long()
        new = rows.nonzero().view(-1)
        reversals, block_start = block_schedule(lengths.index_select(0, new), self._trial_grid[: new.numel()])
        big_cue = reversals.bitwise_and_(1).bitwise_xor_(first_big.index_select(0, new).unsqueeze(1))
        self.big_cue.index_copy_(0, new, big_cue)
        self.block_start.index_copy_(0, new, block_start)
        self.episode_trials = torch.where(rows, self.draw_episode_lengths(TRIALS_PER_EPISODE, TRIALS_PER_EPISODE),
                                          self.episode_trials)

    def derive_columns(self, trials: dict[str, np.ndarray], gamma: float) -> dict[str, np.ndarray]:
        # rpe_cue: the cue-onset RPE, gamma * V(cue step) - V(fixation step) (docs/simulations.md)
        return {"value_fixation": trials["value"], "value_cue": trials["value_last"],
                "rpe_cue": onset_rpe(trials, gamma)}

    def observe(self) -> Tensor:
        return self._fixation_obs if self.stage == 0 else self._eye[self.cue + 1]

    def _advance(self, actions: Tensor):
        if self.stage == 0:
            self.stage = 1
            self.cue = (self.rand(self.num_envs) < 0.5).long()
            return self._no_reward, None, None  # None: no trial ends on a fixation step
        self.stage = 0
        big = self.big_cue[self._rows, self.trial]
        size = torch.where(self.cue == big, BIG_REWARD, SMALL_REWARD)
        reward = torch.where(actions == self.cue, size, 0.0)
        record = None
        if self.recording:
            record = {"cue": self.cue, "big_cue": big, "action": actions, "reward": reward,
                      "trials_since_reversal": self.trial - self.block_start[self._rows, self.trial]}
        self.trial += 1
        return reward, self.every_row, record
