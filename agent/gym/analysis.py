"""Analysis of a gym task's test episodes: reward per step, per episode and, where the environment
marks its trials with info["new_trial"] (NeuroGym), per trial; each beside the same numbers for
uniformly random actions on new episodes of the same environment (chance).

Everything is recomputed from trials.csv's columns: episode, step, reward and new_trial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agent.simulations.registry import make_task


def reward_summary(trials: dict[str, np.ndarray]) -> dict:
    """Per-episode means of the steps' rewards; trials counted from the new_trial column if any."""
    episodes = np.unique(trials["episode"])
    reward = trials["reward"].astype(float)
    summary = {"test_episodes": int(len(episodes)), "steps_per_episode": len(reward) / len(episodes),
               "reward_per_step": float(reward.mean()), "reward_per_episode": float(reward.sum() / len(episodes))}
    if "new_trial" in trials:
        trial_count = int(np.nansum(trials["new_trial"]))
        summary["trials_per_episode"] = trial_count / len(episodes)
        summary["reward_per_trial"] = float(reward.sum() / trial_count) if trial_count else float("nan")
    return summary


def play_random(task, generator: torch.Generator) -> dict[str, np.ndarray]:
    """Each row's first episode played with uniformly random actions: episode, reward and (if
    the environment reports it) new_trial per step."""
    task.recording = True
    task.reset()
    active = torch.ones(task.num_envs, dtype=torch.bool)
    columns = {"episode": [], "reward": [], "new_trial": []}
    rows = torch.arange(task.num_envs)
    while bool(active.any()):
        actions = torch.randint(0, task.num_actions, (task.num_envs,), generator=generator)
        result = task.step(actions.to(task.device))
        keep = (result.trial_end & active.to(task.device)).cpu()
        columns["episode"].append(rows[keep])
        columns["reward"].append(result.record["reward"].cpu()[keep])
        if "new_trial" in result.record:
            columns["new_trial"].append(result.record["new_trial"].cpu()[keep])
        active &= ~result.done.cpu()
    return {name: torch.cat(parts).numpy() for name, parts in columns.items() if parts}


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    task, config = context["task"], context["config"]
    episodes = len(np.unique(trials["episode"]))
    chance_task = make_task(config.task, episodes, seed=context["seed"] + 1, mode="test", options=task.options)
    generator = torch.Generator().manual_seed(context["seed"])
    try:
        chance = reward_summary(play_random(chance_task, generator))
    finally:
        chance_task.close()
    return {**reward_summary(trials), "random_actions": chance}


def summary_lines(metrics: dict) -> list[str]:
    chance = metrics["random_actions"]
    lines = [f"reward per step {metrics['reward_per_step']:.3f} (random actions {chance['reward_per_step']:.3f}), "
             f"per episode {metrics['reward_per_episode']:.3f} (random {chance['reward_per_episode']:.3f}), "
             f"{metrics['steps_per_episode']:.1f} steps per episode"]
    if "reward_per_trial" in metrics:
        lines.append(f"reward per trial (info['new_trial']) {metrics['reward_per_trial']:.3f} "
                     f"(random actions {chance['reward_per_trial']:.3f}), "
                     f"{metrics['trials_per_episode']:.1f} trials per episode")
    return lines
