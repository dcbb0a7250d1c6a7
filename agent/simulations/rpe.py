"""Reward prediction errors computed from the value head's estimates recorded per trial.

run_frozen_episodes (evaluate.py) records, per trial, the value estimate at the trial's first
step (`value`) and at its last step (`value_last`); rows are sorted by episode, then trial.
Each task's `derive_columns` picks the RPE its analysis uses (docs/simulations.md defines them).
"""

from __future__ import annotations

import numpy as np


def next_trial_value(trials: dict[str, np.ndarray]) -> np.ndarray:
    """V at the first step of the next trial of the same episode; 0 after its last trial (the episode ends)."""
    same_episode = np.r_[trials["episode"][1:] == trials["episode"][:-1], False]
    return np.where(same_episode, np.r_[trials["value"][1:], 0.0], 0.0)


def td_rpe(trials: dict[str, np.ndarray], gamma: float, value: str = "value") -> np.ndarray:
    """The outcome RPE: reward + gamma * V(next trial's first step) - V(the trial's `value` step)."""
    return trials["reward"] + gamma * next_trial_value(trials) - trials[value]


def onset_rpe(trials: dict[str, np.ndarray], gamma: float) -> np.ndarray:
    """The RPE on entering a trial's last step from its first, with no reward between them
    (two-step: the second-stage state's onset; reversal: the cue's onset):
    gamma * V(last step) - V(first step)."""
    return gamma * trials["value_last"] - trials["value"]


def outcome_rpe(trials: dict[str, np.ndarray], gamma: float) -> np.ndarray:
    """The RPE that does not look ahead: reward - (1 - gamma) * V(the trial's step), V scaled to
    the reward per step (Simulation 6 feeds it to the network, so it must be known when the
    reward arrives, before the next step's value; model.py says why the scale)."""
    return trials["reward"] - (1.0 - gamma) * trials["value"]
