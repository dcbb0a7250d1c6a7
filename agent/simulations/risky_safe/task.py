"""Simulation 6: dopamine's two roles (Stopper et al. 2014; Wang et al. 2018 Fig. 7).

Two levers: the safe one pays 1 every time, the risky one pays 4 with probability p, where p
is 0.125 or 0.5 by block (risky worth 0.5 or 2 on average: the safe lever is better in one
block type, the risky one in the other). Blocks of 20-40 trials (ours, after a
reimplementation) alternate between the two p, the first drawn per episode; 100 trials per
episode; which lever is risky is drawn per episode. Each block opens with 4 forced trials (2
on each lever, shuffled; the rats had 8): only one lever is offered, the task presses it
whatever the agent does, the agent sees that lever as its previous action, and the step is left
out of the policy loss. Observation: which levers are offered, [lever 0, lever 1].

The agent gets the RPE as an input instead of the reward (train_defaults reward_input "rpe"),
r - (1 - gamma) V(s) (model.py says why this form); `train --reward-input td` feeds the TD error
r + gamma V(s') - V(s) instead (model.py: V(s') from a first pass of the step with the slot at zero),
and the manipulations' offsets are added to it the same way.
At test time, `--manipulation` adds an offset to that RPE input after particular outcomes,
weights frozen (offsets from the reimplementation): +1 after a risky loss (stimulation of
dopamine neurons), -4 after a risky win or -1 after a safe reward (inhibition). The offsets
apply to every outcome of the type, forced trials' included (ours: the RPE is computed on
every trial, and the issue asks for "exactly those outcomes").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from agent.simulations.base import BatchedTask, TaskOption
from agent.simulations.registry import register
from agent.simulations.rpe import outcome_rpe

SAFE_REWARD, RISKY_REWARD = 1.0, 4.0
RISKY_PROBS = (0.125, 0.5)
BLOCK_TRIALS = (20, 40)
FORCED_PER_LEVER = 2
TRIALS_PER_EPISODE = 100
# name -> (risky lever chosen?, rewarded?, offset added to the RPE input); control: none.
MANIPULATIONS = {
    "control": None,
    "stim_after_risky_loss": (True, False, 1.0),
    "inhibit_after_risky_win": (True, True, -4.0),
    "inhibit_after_safe_reward": (False, True, -1.0),
}


def manipulation_offset(name: str, chose_risky, rewarded):
    """The offset `name` adds to the RPE input after each outcome (numpy arrays or tensors alike)."""
    rule = MANIPULATIONS[name]
    if rule is None:
        return 0.0 * rewarded
    risky, win, offset = rule
    return offset * ((chose_risky == risky) & (rewarded == win))


@register
class RiskySafe(BatchedTask):
    name = "risky_safe"
    description = ("risky vs safe (Sim. 6): safe lever 1, risky lever 4 with p 0.125 or 0.5 by block, forced "
                   "trials at block starts, RPE as input, test-time RPE manipulations, 100 trials")
    obs_size = 2
    num_actions = 2
    # forced: the task chose the lever (0/1); action: the lever pressed (the forced one on forced trials).
    trial_columns = ("forced", "p_risky", "risky_action", "action", "reward")
    derived_columns = ("rpe_raw", "rpe_input", "condition")
    column_labels = {"condition": tuple(MANIPULATIONS)}
    analysis_module = "agent.simulations.risky_safe.analysis"
    state_tensors = ("p_risky", "forced_lever", "risky_action")
    has_forced_steps = True
    options = {
        "manipulation": TaskOption("control", "risky_safe (eval): offset added to the RPE input after one outcome "
                                   "type: stim_after_risky_loss +1, inhibit_after_risky_win -4, "
                                   "inhibit_after_safe_reward -1; eval plays control and the named one on the "
                                   "same test episodes, or all four (all, eval's default); training runs control",
                                   (*MANIPULATIONS, "all"), at_eval=True, test_default="all"),
    }
    # (ours) 80k episodes (8M steps; 226-257 s with two jobs on two cores). Seed 0's training
    # reward per trial was flat near chance (1.10-1.15) to ~50k episodes, then rose to 1.25 by
    # 80k; evaluated at ~55k its P(risky) differed between block types by 0.10, at 80k by 0.28
    # (target > 0.2).
    train_defaults = {"reward_input": "rpe", "episodes": 80_000}

    @classmethod
    def eval_variants(cls, options: dict) -> list[dict]:
        """Control, then the named manipulation (or every one), on the same test episodes."""
        name = options["manipulation"]
        names = tuple(MANIPULATIONS) if name == "all" else tuple(dict.fromkeys(("control", name)))
        return [{**options, "manipulation": n} for n in names]

    def __init__(self, num_envs: int, **kwargs):
        super().__init__(num_envs, **kwargs)
        if self.options["manipulation"] == "all" or (self.mode == "train" and self.options["manipulation"] != "control"):
            raise ValueError(f"--manipulation: a {self.mode} task plays one condition (training: control only), got "
                             f"{self.options['manipulation']!r}; eval plays several as separate task instances")
        B, dev = num_envs, self.device
        self.max_trials = max(TRIALS_PER_EPISODE, self.trials_override or 0)
        # per row and trial of the episode: the risky lever's p, and the forced lever (-1: free)
        self.p_risky = torch.zeros(B, self.max_trials, device=dev)
        self.forced_lever = torch.full((B, self.max_trials), -1, dtype=torch.long, device=dev)
        self.risky_action = torch.zeros(B, dtype=torch.long, device=dev)
        self._rows = torch.arange(B, device=dev)
        self._offers = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], device=dev)  # lever 0, lever 1, both
        self._forced_order = torch.tensor([0] * FORCED_PER_LEVER + [1] * FORCED_PER_LEVER, device=dev)

    def _new_episodes(self, rows: Tensor) -> None:
        B, dev = self.num_envs, self.device
        t = torch.arange(self.max_trials, device=dev)
        low, high = BLOCK_TRIALS
        blocks = self.max_trials // low + 1
        lengths = torch.randint(low, high + 1, (B, blocks), generator=self.generator, device=dev)
        ends = lengths.cumsum(1)
        block = (t.unsqueeze(-1) >= ends.unsqueeze(1)).sum(-1)  # (B, T) block index
        starts = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=dev), ends], dim=1)
        into_block = t - starts.gather(1, block)
        first_rich = (self.rand(B) < 0.5).long().unsqueeze(1)  # p alternates between blocks
        p_risky = torch.tensor(RISKY_PROBS, device=dev)[(first_rich + block) % 2]
        # forced levers: a shuffled (0, 0, 1, 1) per block, on the block's first trials
        order = self._forced_order[self.rand(B, blocks + 1, len(self._forced_order)).argsort(-1)]
        forced = order.gather(1, block.unsqueeze(-1).expand(-1, -1, order.shape[-1]))  # (B, T, 4)
        in_forced = into_block < len(self._forced_order)
        forced = torch.where(in_forced, forced.gather(2, into_block.clamp(max=3).unsqueeze(-1)).squeeze(-1), -1)
        self.p_risky = torch.where(rows.unsqueeze(1), p_risky, self.p_risky)
        self.forced_lever = torch.where(rows.unsqueeze(1), forced, self.forced_lever)
        self.risky_action = torch.where(rows, (self.rand(B) < 0.5).long(), self.risky_action)
        self.episode_trials = torch.where(rows, self.draw_episode_lengths(TRIALS_PER_EPISODE, TRIALS_PER_EPISODE),
                                          self.episode_trials)

    def _current(self, table: Tensor) -> Tensor:
        return table[self._rows, self.trial.clamp(max=self.max_trials - 1)]

    def observe(self) -> Tensor:
        forced = self._current(self.forced_lever)
        return self._offers[torch.where(forced < 0, 2, forced)]

    def _advance(self, actions: Tensor):
        forced_lever = self._current(self.forced_lever)
        p = self._current(self.p_risky)
        self.forced = forced_lever >= 0
        self.executed = torch.where(self.forced, forced_lever, actions)
        chose_risky = self.executed == self.risky_action
        win = self.rand(self.num_envs) < p
        reward = torch.where(chose_risky, RISKY_REWARD * win, SAFE_REWARD)
        if self.options["manipulation"] != "control":
            self.rpe_offset = manipulation_offset(self.options["manipulation"], chose_risky, reward > 0)
        record = None
        if self.recording:
            record = {"forced": self.forced.long(), "p_risky": p, "risky_action": self.risky_action.clone(),
                      "action": self.executed, "reward": reward}
        self.trial += 1
        return reward, self.every_row, record

    def derive_columns(self, trials: dict[str, np.ndarray], gamma: float) -> dict[str, np.ndarray]:
        # rpe_raw: r - (1 - gamma) V(s) at the trial's (single) step, the RPE the network is fed;
        # rpe_input: what it was fed after the manipulation's offset.
        # With reward_input td the network is fed the TD error instead (model.py), which eval records
        # as `rpe_fed` (offset included): rpe_raw is then that TD error, rpe_input what was fed.
        name = self.options["manipulation"]
        offset = manipulation_offset(name, trials["action"] == trials["risky_action"], trials["reward"] > 0)
        rpe_raw = trials["rpe_fed"] - offset if "rpe_fed" in trials else outcome_rpe(trials, gamma)
        condition = np.full(len(rpe_raw), tuple(MANIPULATIONS).index(name))
        return {"rpe_raw": rpe_raw, "rpe_input": rpe_raw + offset, "condition": condition}
