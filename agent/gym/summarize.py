"""The agent's numbers in README.md, from its evaluations (metrics.json and trials.csv alone):
reward per trial per seed, and by trial position within the 100-trial episodes (the first 10
trials against the last 10: what the agent infers within an episode).

    .venv/bin/python -m agent.gym.summarize runs/gym/daw_s{0,1,2}_eval runs/gym/bandit_s{0,1,2}_eval
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np


def by_trial_position(eval_dir: Path) -> tuple[float, float]:
    """Reward per trial over trials 1-10 and 91-100 of every episode (a trial's reward is the sum
    of its steps'; a trial ends on the step with new_trial set)."""
    with open(eval_dir / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    first, last, trial, episode, reward = [], [], 0, None, 0.0
    for row in rows:
        if row["episode"] != episode:
            episode, trial, reward = row["episode"], 0, 0.0
        reward += float(row["reward"])
        if float(row["new_trial"]) == 1:
            (first if trial < 10 else last if trial >= 90 else []).append(reward)
            trial, reward = trial + 1, 0.0
    return float(np.mean(first)), float(np.mean(last))


def main(eval_dirs: list[str]) -> None:
    print("| run | reward per trial | trials 1-10 | trials 91-100 | random actions | train episodes | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in eval_dirs:
        eval_dir = Path(name)
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        early, late = by_trial_position(eval_dir)
        print(f"| {eval_dir.name} | {metrics['reward_per_trial']:.3f} | {early:.3f} | {late:.3f} | "
              f"{metrics['random_actions']['reward_per_trial']:.3f} | {metrics['train_episodes']} | "
              f"{metrics['train_seconds']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
