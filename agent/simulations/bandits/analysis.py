"""Bandit analysis: cumulative expected regret of the frozen agent against the baselines,
played on the same episodes (the same arm probabilities).

Regret on a trial = max_a p_a - p_(chosen arm): the expected reward lost to not pulling the
best arm; summed over trials 1..t it is the cumulative regret (Wang et al. 2016 Fig. 2).
`regret_difference`: per baseline, the agent's cumulative regret at the last trial minus the
baseline's, paired over the test episodes (both play each episode's arms), with a 95%
percentile bootstrap interval over episodes (intervals.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agent.simulations.bandits.baselines import BASELINES
from agent.simulations.bandits.runner import play_bandit
from agent.simulations.figures import new_figure, save_figure
from agent.simulations.intervals import bootstrap_interval


def episode_arm_probs(trials: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(episode ids, (E, A) arm probabilities) from each episode's first trial."""
    arm_columns = sorted((c for c in trials if c.startswith("p_")), key=lambda c: int(c[2:]))
    first = np.flatnonzero(np.r_[True, trials["episode"][1:] != trials["episode"][:-1]])
    return trials["episode"][first], np.column_stack([trials[c][first] for c in arm_columns])


def agent_regret(trials: dict[str, np.ndarray]) -> np.ndarray:
    """(E, T) regret per trial of the agent (episodes of equal length)."""
    arm_columns = sorted((c for c in trials if c.startswith("p_")), key=lambda c: int(c[2:]))
    probs = np.column_stack([trials[c] for c in arm_columns])
    regret = probs.max(axis=1) - probs[np.arange(len(probs)), trials["action"].astype(int)]
    episodes = len(np.unique(trials["episode"]))
    return regret.reshape(episodes, -1)


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    _, arm_probs = episode_arm_probs(trials)
    curves = {"meta-RL agent": np.cumsum(agent_regret(trials), axis=1)}
    trial_count = curves["meta-RL agent"].shape[1]
    for key, policy_class in BASELINES.items():
        play = play_bandit(policy_class(), torch.from_numpy(arm_probs), trial_count, seed=context["seed"])
        curves[key] = np.cumsum(play.regret.numpy(), axis=1)

    fig, (ax,) = new_figure(1, width_per_column=5.5, height=4.0)
    for name, curve in curves.items():
        mean = curve.mean(axis=0)
        sem = curve.std(axis=0) / np.sqrt(curve.shape[0])
        t = np.arange(1, trial_count + 1)
        ax.plot(t, mean, label=f"{name} ({mean[-1]:.2f})", lw=2.5 if name == "meta-RL agent" else 1.5)
        ax.fill_between(t, mean - sem, mean + sem, alpha=0.2)
    ax.set_xlabel("trial")
    ax.set_ylabel("cumulative regret")
    ax.set_title(f"{context['config'].task}: cumulative regret ({curve.shape[0]} episodes)")
    ax.legend(fontsize=8)
    figure = save_figure(fig, Path(out_dir) / "cumulative_regret.png")

    final = {name: float(curve[:, -1].mean()) for name, curve in curves.items()}
    agent_last = curves["meta-RL agent"][:, -1]
    mean = lambda x, axis=-1: np.mean(x, axis=axis)  # noqa: E731
    difference = {name: {"value": float(np.mean(agent_last - curve[:, -1])),
                         "ci95": bootstrap_interval(mean, agent_last - curve[:, -1])}
                  for name, curve in curves.items() if name != "meta-RL agent"}
    agent_final = final.pop("meta-RL agent")
    return {
        "regret_at_last_trial": {"agent": agent_final, **final},
        "regret_last_trial_sem": float(curves["meta-RL agent"][:, -1].std() / np.sqrt(len(arm_probs))),
        "agent_vs_thompson_ratio": agent_final / final["thompson"],
        "agent_beats_ucb1": agent_final < final["ucb1"],
        "regret_difference": difference,
        "trials_per_episode": trial_count,
        "figures": [figure],
    }


def summary_lines(metrics: dict) -> list[str]:
    return ["cumulative regret at last trial: " + ", ".join(
        f"{k} {v:.2f}" for k, v in metrics["regret_at_last_trial"].items())]
