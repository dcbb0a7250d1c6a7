"""`python -m agent eval`: run new episodes with the trained weights frozen, write trials.csv,
metrics.json and the task's figures. The checkpoint is only read.

All test episodes run side by side, one per batch row; each row's first episode is recorded
and whatever the row does after it ends is ignored (rows may end at different steps).
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

import fastrnn

from agent.core.config import TrainConfig
from agent.core.model import sample_actions
from agent.core.rollout import Carry
from agent.core.trainer import make_agent
from agent.infra.checkpoint import (check_finite_weights, checkpoint_path, load_checkpoint, load_quantile_snapshots,
                                    quantile_path)
from agent.infra.flags import flag_name
from agent.simulations.registry import get_task_class, make_task

DEFAULT_TEST_EPISODES = 300
DEFAULT_TEST_SEED = 2018  # distinct from training seeds, so test episodes are new ones
_INTEGER = re.compile(r"-?\d+")


def run_frozen_episodes(agent, task, sampler: torch.Generator) -> dict[str, np.ndarray]:
    """Play each row's first episode; return trial columns plus `episode`, `trial` and, per
    trial, the value estimate at its first step (`value`) and at its last step (`value_last`),
    and the LSTM hidden state at its first step (`hidden`, (trials, H); not written to CSV)."""
    task.recording = True
    carry = Carry.initial(agent, task.reset())
    x, starts, state = carry.next_input, carry.next_starts, carry.state
    active = torch.ones(task.num_envs, dtype=torch.bool, device=task.device)
    trial_start_value = torch.zeros(task.num_envs, device=task.device)
    trial_start_hidden = torch.zeros(task.num_envs, agent.hidden_size, device=task.device)
    # td input: also the signal fed after each trial's last step (`rpe_fed`, model.py's last_fed)
    fed = ("rpe_fed",) if agent.feeds_td else ()
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in ("episode", "trial", *task.trial_columns,
                                                                  "value", "value_last", "hidden", *fed)}
    episode_ids = torch.arange(task.num_envs, device=task.device)
    at_trial_start = torch.ones(task.num_envs, dtype=torch.bool, device=task.device)
    # Frozen weights: nothing writes them, so version counters prove them unchanged.
    with torch.no_grad(), fastrnn.trust_version_counters():
        while bool(active.any()):
            logits, value, hidden, state = agent.step(x, state, starts)
            trial_start_value = torch.where(at_trial_start, value, trial_start_value)
            trial_start_hidden = torch.where(at_trial_start.unsqueeze(1), hidden, trial_start_hidden)
            action = sample_actions(logits, sampler)
            trial_index = task.trial.clone()
            result = task.step(action)
            keep = result.trial_end & active
            if bool(keep.any()):
                append_trial_rows(rows, task, result, keep, episode_ids, trial_index, trial_start_value, value)
                rows["hidden"].append(trial_start_hidden[keep])
            at_trial_start = result.trial_end
            active &= ~result.done
            starts = agent.core_resets(result)  # episode starts (and trial starts under state_reset)
            x = agent.next_input(result, action, value, state=state)
            if fed and bool(keep.any()):
                rows["rpe_fed"].append(agent.last_fed[keep])
    columns = {name: torch.cat(parts).cpu().numpy() for name, parts in rows.items()}
    order = np.lexsort((columns["trial"], columns["episode"]))
    return {name: values[order] for name, values in columns.items()}


def append_trial_rows(rows: dict, task, result, keep, episode_ids, trial_index, trial_start_value, value) -> None:
    """Append the trials that ended at this step (rows where `keep`) to the column lists of
    trials.csv: episode, trial, the task's own columns, and the player's value at the trial's
    first and last step (the agent's value head, or a control's own estimate)."""
    rows["episode"].append(episode_ids[keep])
    rows["trial"].append(trial_index[keep])
    for name in task.trial_columns:
        rows[name].append(result.record[name][keep])
    rows["value"].append(trial_start_value[keep])
    rows["value_last"].append(value[keep])


def write_trials_csv(path: Path, trials: dict[str, np.ndarray], columns: list[str],
                     labels: dict[str, tuple[str, ...]] | None = None) -> None:
    labels = labels or {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(len(trials["episode"])):
            writer.writerow([labels[c][int(trials[c][i])] if c in labels else _fmt(trials[c][i]) for c in columns])


def read_trials_csv(path: Path, labels: dict[str, tuple[str, ...]] | None = None) -> dict[str, np.ndarray]:
    """trials.csv back into columns: labelled columns as their codes, columns of integers as
    int64, the rest float64 (NaN where written nan)."""
    labels = labels or {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        cells = list(zip(*reader)) or [()] * len(header)
    trials = {}
    for name, column in zip(header, cells):
        if name in labels:
            trials[name] = np.array([labels[name].index(v) for v in column], dtype=np.int64)
        elif all(_INTEGER.fullmatch(v) for v in column):
            trials[name] = np.array(column, dtype=np.int64)
        else:
            trials[name] = np.array(column, dtype=np.float64)
    return trials


def _fmt(value) -> str:
    if isinstance(value, (np.floating, float)):
        return f"{float(value):.6g}"
    return str(int(value))


def test_options(task_class, run_options: dict, overrides: dict | None = None) -> dict:
    """The task options of the test episodes: the run's, then each option's test default, then
    eval's overrides (raises ValueError naming a flag the task does not take)."""
    overrides = dict(overrides or {})
    refused = sorted(name for name in overrides if name not in task_class.options
                     or not task_class.options[name].at_eval)
    if refused:
        raise ValueError(f"{', '.join(map(flag_name, refused))}: not an eval option of task "
                         f"{task_class.name!r}")
    defaults = {name: option.test_default for name, option in task_class.options.items()
                if option.test_default is not None}
    return task_class.resolve_options({**run_options, **defaults, **overrides})


def play_frozen(config: TrainConfig, weights: dict, task_options: dict, *, episodes: int, seed: int,
                device: str, core: str):
    """(trials, task, agent): fresh test episodes played by the given weights, frozen."""
    task = make_task(config.task, episodes, seed=seed, device=device, mode="test", options=task_options)
    agent = make_agent(config, type(task), core=core).to(device)
    agent.load_state_dict(weights)
    agent.eval()
    agent.requires_grad_(False)  # frozen
    sampler = torch.Generator(device=device)
    sampler.manual_seed(seed)
    return run_frozen_episodes(agent, task, sampler), task, agent


def evaluate(run_dir, out_dir, *, episodes: int = DEFAULT_TEST_EPISODES, seed: int = DEFAULT_TEST_SEED,
             device: str = "cpu", core: str = "fast", progress: bool = True,
             task_options: dict | None = None) -> dict:
    """task_options: eval's overrides of the test episodes' task options (harlow's --positions)."""
    start = time.perf_counter()
    saved = load_checkpoint(run_dir, map_location=device)
    check_finite_weights(saved["trainer"]["agent"], checkpoint_path(run_dir))
    config = TrainConfig.from_dict(saved["config"])
    task_class = get_task_class(config.task)
    options = test_options(task_class, config.task_options, task_options)
    snapshots = _finite_quantile_snapshots(run_dir, device) if task_class.evaluates_quantiles else {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    play = dict(episodes=episodes, seed=seed, device=device, core=core)
    # Most tasks play one set of test episodes; a task with test-time conditions (risky_safe's
    # manipulations) plays the same episodes (same seed) once per condition, rows stacked.
    played = [play_frozen(config, saved["trainer"]["agent"], variant, **play)
              for variant in task_class.eval_variants(options)]
    for variant_trials, variant_task, _ in played:
        variant_trials.update(variant_task.derive_columns(variant_trials, config.gamma))
    trials = {name: np.concatenate([t[name] for t, _, _ in played]) for name in played[0][0]}
    task, agent = played[0][1], played[0][2]
    # Training quantiles, each played on the same test episodes (same seed) as the final weights.
    quantile_trials, quantile_episodes = {}, {}
    for quantile, snapshot in snapshots.items():
        quantile_trials[quantile] = play_frozen(config, snapshot["agent"], options, **play)[0]
        quantile_episodes[quantile] = int(snapshot["episodes"])
    if task.index_column != "trial":  # gym tasks record steps, not trials
        trials[task.index_column] = trials.pop("trial")
    columns = ["episode", task.index_column, *task.trial_columns, *task.derived_columns]
    write_trials_csv(out_dir / "trials.csv", trials, columns, task.column_labels)
    metrics = {
        "task": config.task, "run_dir": str(run_dir), "episodes": episodes, "seed": seed,
        "core": core, "backend": getattr(agent.core, "last_backend", None), "task_options": options,
        "train_episodes": saved["trainer"]["episodes"], "train_seconds": saved["trainer"]["train_seconds"],
        "mean_reward_per_trial": float(np.mean(trials["reward"])),
        "mean_reward_per_episode": float(np.sum(trials["reward"]) / episodes),
    }
    if task.analysis_module:
        analysis = importlib.import_module(task.analysis_module)
        metrics.update(analysis.analyze(trials, out_dir, {"task": task, "config": config, "seed": seed,
                                                          "quantile_trials": quantile_trials,
                                                          "quantile_episodes": quantile_episodes,
                                                          "run_dir": Path(run_dir)}))
    metrics["eval_seconds"] = time.perf_counter() - start
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    return metrics


def _finite_quantile_snapshots(run_dir, device: str) -> dict[int, dict]:
    """The run's training-quantile snapshots, each refused (CheckpointError) if its weights are not
    finite; read before the evaluation writes anything."""
    snapshots = load_quantile_snapshots(run_dir, map_location=device)
    for quantile, snapshot in snapshots.items():
        check_finite_weights(snapshot["agent"], quantile_path(run_dir, quantile))
    return snapshots


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
