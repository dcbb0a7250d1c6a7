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
from agent.simulations.blocks import block_schedule, trial_grid
from agent.simulations.registry import register
from agent.simulations.rpe import outcome_rpe

SAFE_REWARD, RISKY_REWARD = 1.0, 4.0
RISKY_PROBS = (0.125, 0.5)
BLOCK_TRIALS = (20, 40)
FORCED_PER_LEVER = 2
FORCED = 2 * FORCED_PER_LEVER  # forced trials at each block's start
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
        self._risky_probs = torch.tensor(RISKY_PROBS, device=dev)
        self._trial_grid = trial_grid(B, self.max_trials, dev)
        # the i-th new row's first entry in the flat table of the new rows' shuffles (_new_episodes)
        blocks = self.max_trials // BLOCK_TRIALS[0] + 1
        self._row_blocks = self._rows.unsqueeze(1) * ((blocks + 1) * FORCED)

    def _new_episodes(self, rows: Tensor) -> None:
        B = self.num_envs
        low, high = BLOCK_TRIALS
        blocks = self.max_trials // low + 1
        # Every row's draws, in the order they have always been made (a seed plays the same
        # episodes); the tables are then built for the new rows only (usually one of 32).
        lengths = torch.randint(low, high + 1, (B, blocks), generator=self.generator, device=self.device)
        first_rich = self.rand(B) < 0.5  # p alternates between blocks
        shuffle_keys = self.rand(B, blocks + 1, FORCED)  # a shuffled (0, 0, 1, 1) per block
        risky_action = (self.rand(B) < 0.5).long()
        new = rows.nonzero().view(-1)
        grid = self._trial_grid[: new.numel()]
        block, block_start = block_schedule(lengths.index_select(0, new), grid)  # (new rows, T) each
        into_block = grid - block_start
        parity = (block + first_rich.index_select(0, new).unsqueeze(1)).bitwise_and_(1)
        self.p_risky.index_copy_(0, new, self._risky_probs.index_select(0, parity.view(-1)).view_as(parity))
        # forced levers on the block's first FORCED trials: the new rows' shuffles as one flat
        # table, read at (row, block, trial into the block)
        order = self._forced_order.index_select(0, shuffle_keys.index_select(0, new).argsort(-1).view(-1))
        at = (block * FORCED).add_(self._row_blocks[: new.numel()]).add_(into_block.clamp(max=FORCED - 1))
        forced = order.index_select(0, at.view(-1)).view_as(at).masked_fill_(into_block >= FORCED, -1)
        self.forced_lever.index_copy_(0, new, forced)
        self.risky_action.index_copy_(0, new, risky_action.index_select(0, new))
        self.episode_trials = torch.where(rows, self.draw_episode_lengths(TRIALS_PER_EPISODE, TRIALS_PER_EPISODE),
                                          self.episode_trials)

    def _current(self, table: Tensor) -> Tensor:
        """Each row's entry for its current trial (always within the table: a row's trial is
        below its episode's length, at most max_trials, whenever a step reads it)."""
        return table[self._rows, self.trial]

    def observe(self) -> Tensor:
        # the forced lever, -1 on free trials, indexes the offers: row -1 (the last) offers both
        return self._offers[self._current(self.forced_lever)]

    def _advance(self, actions: Tensor):
        forced_lever = self._current(self.forced_lever)
        p = self._current(self.p_risky)
        self.forced = forced_lever >= 0
        self.executed = torch.where(self.forced, forced_lever, actions)
        chose_risky = self.executed == self.risky_action
        reward = torch.where(chose_risky, RISKY_REWARD * (self.rand(self.num_envs) < p), SAFE_REWARD)
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
