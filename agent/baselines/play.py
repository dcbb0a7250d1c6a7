"""`python -m agent baseline`: a classical learner (registry.py) plays a task's test episodes and
writes trials.csv and metrics.json as `agent eval` does, so every analysis and figure runs on it.

Same episodes as eval: the task is built as eval builds it (test mode, the same seed, the task
options a run trained with the task's defaults would be tested with, eval's task flags on top)
and the learner draws from its own generator only, so the task's random draws (which state is
good, transitions, reward draws, blocks, cues, images) are those the agent meets under
`agent eval --seed S`. Each row plays its first episode, recorded as eval records it; a task
with test-time conditions (risky_safe's manipulations) is played once per condition, same seed,
rows stacked.

trials.csv has eval's columns. `value` and `value_last` hold the learner's own estimates and
the task's derive_columns turns them into its RPE columns with the learner's discount (see
step_policy.py); a learner without estimates leaves them NaN. The task's analysis then runs on
the rows read back from trials.csv (not the in-memory ones), so metrics.json is what trials.csv
alone supports. metrics.json: eval's keys (core, backend, run_dir and the training ones are
null), `baseline` (strategy, description, parameters, gamma, what `value` holds), the analysis.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from agent.baselines.registry import check_choice, make_policy


def baseline_task_options(task: str, overrides: dict | None = None) -> dict:
    """The test episodes' task options: those of a run trained with the task's defaults, then
    eval's (ValueError naming a flag the task does not take at eval)."""
    from agent.commands.evaluate import test_options
    from agent.core.config import resolve_config
    from agent.simulations.registry import get_task_class

    return test_options(get_task_class(task), resolve_config({"task": task}).task_options, overrides)


def play_policy(policy, task) -> dict[str, np.ndarray]:
    """Each row's first episode played by `policy`: trial columns plus episode, trial, and the
    learner's value at each trial's first step (`value`) and last step (`value_last`), NaN
    where it keeps none (evaluate.run_frozen_episodes' record, without `hidden`)."""
    from agent.commands.evaluate import append_trial_rows

    task.recording = True
    obs = task.reset()
    policy.reset(task, obs)
    B = task.num_envs
    nan = torch.full((B,), float("nan"), dtype=torch.float64)
    active = torch.ones(B, dtype=torch.bool)
    at_trial_start = torch.ones(B, dtype=torch.bool)
    trial_start_value = nan.clone()
    episode_ids = torch.arange(B)
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in ("episode", "trial", *task.trial_columns,
                                                                  "value", "value_last")}
    while bool(active.any()):
        actions, value = policy.act(obs, task)
        value = nan if value is None else value.double()
        trial_start_value = torch.where(at_trial_start, value, trial_start_value)
        trial_index = task.trial.clone()
        result = task.step(actions)
        keep = result.trial_end & active
        if bool(keep.any()):
            append_trial_rows(rows, task, result, keep, episode_ids, trial_index, trial_start_value, value)
        policy.learn(actions, result, task)
        at_trial_start = result.trial_end
        active &= ~result.done
        obs = result.obs
    columns = {name: torch.cat(parts).cpu().numpy() for name, parts in rows.items()}
    order = np.lexsort((columns["trial"], columns["episode"]))
    return {name: values[order] for name, values in columns.items()}


def play_baseline(task_name: str, strategy: str, *, episodes: int, seed: int, options: dict):
    """(trials with derived columns, task, policy): every eval variant of the task played by a
    fresh learner of the same seed, rows stacked as eval stacks them."""
    from agent.simulations.registry import get_task_class, make_task

    played = []
    for variant in get_task_class(task_name).eval_variants(options):
        task = make_task(task_name, episodes, seed=seed, device="cpu", mode="test", options=variant)
        policy = make_policy(task_name, strategy, seed, options)
        # Policies that draw from torch's global generator (the bandit policies) do so in a
        # forked state seeded here: reproducible, and the caller's RNG is left alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            trials = play_policy(policy, task)
        trials.update(task.derive_columns(trials, policy.gamma))
        played.append((trials, task, policy))
    trials = {name: np.concatenate([t[name] for t, _, _ in played]) for name in played[0][0]}
    return trials, played[0][1], played[0][2]


def run_baseline(task_name: str, strategy: str, out_dir, *, episodes: int = 300, seed: int = 2018,
                 task_options: dict | None = None) -> dict:
    """Play, write trials.csv, run the task's analysis on it, write metrics.json; the metrics."""
    from agent.commands.evaluate import read_trials_csv, write_trials_csv
    from agent.core.config import resolve_config

    start = time.perf_counter()
    check_choice(task_name, strategy)
    options = baseline_task_options(task_name, task_options)
    out_dir = Path(out_dir)
    trials, task, policy = play_baseline(task_name, strategy, episodes=episodes, seed=seed, options=options)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["episode", task.index_column, *task.trial_columns, *task.derived_columns]
    write_trials_csv(out_dir / "trials.csv", trials, columns, task.column_labels)
    trials = read_trials_csv(out_dir / "trials.csv", task.column_labels)
    config = resolve_config({"task": task_name})  # the default run the test episodes are those of
    metrics = {
        "task": task_name, "run_dir": None, "episodes": episodes, "seed": seed, "core": None, "backend": None,
        "task_options": options, "train_episodes": None, "train_seconds": None,
        "baseline": {"strategy": strategy, "description": policy.description, "parameters": policy.parameters(),
                     "gamma": policy.gamma, "value": policy.value_note},
        "mean_reward_per_trial": float(np.mean(trials["reward"])),
        "mean_reward_per_episode": float(np.sum(trials["reward"]) / episodes),
    }
    if task.analysis_module:
        analysis = importlib.import_module(task.analysis_module)
        metrics.update(analysis.analyze(trials, out_dir, {"task": task, "config": config, "seed": seed,
                                                          "quantile_trials": {}, "quantile_episodes": {},
                                                          "run_dir": None}))
    metrics["eval_seconds"] = time.perf_counter() - start
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    return metrics


def _json_default(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
