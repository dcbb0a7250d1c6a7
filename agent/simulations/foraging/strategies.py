"""Reference strategies on the foraging task, through the agent's own analyses.

Plays each strategy of baselines.py on the test episodes of the foraging task (the same task
class, options and test distribution the agent is evaluated on) and reports
what eval reports for the agent: reward per trial, stay rates, the Lau & Glimcher reward
kernel with its Wald intervals and whether it decays (kernel_decays), and the matching slope.

    python -m agent.simulations.foraging.strategies --episodes 1000 --seeds 0 1 2 --out results/foraging/strategies/default.json
    python -m agent.simulations.foraging.strategies --episodes 1000 --option blocks=geometric-5 --out ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agent.simulations.foraging import analysis as foraging
from agent.simulations.foraging import baselines as strategies
from agent.simulations.foraging.task import Foraging, parse_blocks
from agent.simulations.intervals import bootstrap_interval
from agent.simulations.registry import make_task

TEST_TRIALS = 100


def play(strategy, episodes: int, seed: int, options: dict | None = None) -> dict[str, np.ndarray]:
    """trials.csv's columns (episode, trial and the task's) for one test episode per row."""
    task = make_task("foraging", episodes, seed=seed, mode="test", options=options or {})
    task.recording = True
    task.reset()
    strategy.reset(episodes)
    records = []
    for _ in range(TEST_TRIALS):
        actions = strategy.choose(task)
        result = task.step(actions)
        strategy.update(actions, result.reward)
        records.append({k: v.numpy() for k, v in result.record.items()})
    trials = {k: np.stack([r[k] for r in records], 1).ravel() for k in records[0]}  # episode-major
    trials["episode"] = np.repeat(np.arange(episodes), TEST_TRIALS)
    trials["trial"] = np.tile(np.arange(TEST_TRIALS), episodes)
    return trials


def summarize(trials: dict[str, np.ndarray]) -> dict:
    per_episode = np.bincount(trials["episode"], weights=trials["reward"]) / np.bincount(trials["episode"])
    regression = foraging.lagged_regression(trials)
    match = foraging.matching(trials)
    return {
        "reward_per_trial": float(per_episode.mean()),
        "reward_per_trial_ci95": bootstrap_interval(np.mean, per_episode),
        "stay_rates": foraging.stay_rates(trials),
        "reward_kernel": regression["reward_kernel"], "reward_kernel_ci95": regression["reward_kernel_ci95"],
        "choice_kernel": regression["choice_kernel"],
        "episodes_dropped": regression["episodes_dropped"], "converged": regression["converged"],
        "reward_kernel_decays": foraging.kernel_decays(regression),
        "matching_slope": match["slope"], "matching_slope_ci95": match["slope_ci95"],
    }


def change_hazard(options: dict) -> float:
    """The per-trial chance of a block change in the test episodes (the belief agent's prior)."""
    rule, low, high = parse_blocks(options.get("blocks", Foraging.options["blocks"].default))
    if rule == "geometric":
        return 1 / low
    return ((low + high) / 2 - 1) / (TEST_TRIALS - 1)


def default_strategies(seed: int, options: dict | None = None) -> list:
    return [
        strategies.KnownRatesOptimal(seed=seed),
        strategies.BeliefOptimal(hazard=change_hazard(options or {}), seed=seed),
        strategies.QLearnerSoftmax(alpha=0.3, beta=5.0, seed=seed),
        strategies.QLearnerSoftmax(alpha=0.13, beta=2.64, seed=seed),  # fitted to the agent, seed 0
        strategies.WinStayLoseShift(seed=seed),
        strategies.Alternate(seed=seed),
        strategies.RandomChoice(seed=seed),
    ]


def table(results: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: one per strategy and seed."""
    lines = ["| strategy | seed | reward per trial | stay (win / lose) | lag 1 | lag 3 | lag 5 | choice lag 1 | "
             "decays | matching slope |", "| --- " * 10 + "|"]
    for name, runs in results.items():
        for r in runs:
            k, ci = r["reward_kernel"], r["reward_kernel_ci95"]
            lags = " | ".join(f"{k[i]:.2f} [{ci[i][0]:.2f}, {ci[i][1]:.2f}]" for i in (0, 2, 4))
            s = r["stay_rates"]
            lo, hi = r["reward_per_trial_ci95"]
            lines.append(f"| {name} | {r['seed']} | {r['reward_per_trial']:.3f} [{lo:.3f}, {hi:.3f}] | "
                         f"{s['stay']:.2f} ({s['win_stay']:.2f} / {s['lose_stay']:.2f}) | {lags} | "
                         f"{r['choice_kernel'][0]:.2f} | {'yes' if r['reward_kernel_decays'] else 'no'} | "
                         f"{r['matching_slope']:.2f} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a foraging task option for the test episodes (e.g. blocks=3-6)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the results")
    args = parser.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)
    results: dict[str, list[dict]] = {}
    start = time.perf_counter()
    for seed in args.seeds:
        for strategy in default_strategies(seed, options):
            summary = summarize(play(strategy, args.episodes, seed, options))
            results.setdefault(strategy.name, []).append({"seed": seed, **summary})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"episodes": args.episodes, "task_options": options, "results": results,
                                    "seconds": time.perf_counter() - start}, indent=1))
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
