"""Harlow over several seeds: one markdown table from the eval directories of several runs.

    python -m agent.simulations.harlow.seeds EVAL_DIR [EVAL_DIR ...]

Per run: accuracy by trial on the held-out pool, trial 2 split by trial 1's outcome, the
training episodes and seconds; then the mean over runs with a 95% t interval (scipy), beside
the paper's values (Fig. 6c, final quantile, read off the figure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

PAPER = "~52% | ~97-99% (trials 2-6)"


def load(eval_dir: Path) -> dict:
    return json.loads((Path(eval_dir) / "metrics.json").read_text())


def seed_row(metrics: dict) -> list[str]:
    accuracy = [row["accuracy"] for row in metrics["accuracy_by_trial"]]
    split = metrics["trial2_after_trial1"]
    config = json.loads((Path(metrics["run_dir"]) / "config.json").read_text())
    return [str(config["seed"]), *(f"{a:.1%}" for a in accuracy),
            f"{split['correct']['accuracy']:.1%} / {split['wrong']['accuracy']:.1%}",
            f"{metrics['train_episodes']:,}", f"{metrics['train_seconds']:.0f}"]


def mean_interval(values: np.ndarray) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.1%}"
    half = float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))
    return f"{mean:.1%} ± {half:.1%}"


def table(runs: list[dict]) -> str:
    trials = len(runs[0]["accuracy_by_trial"])
    header = ["seed", *(f"trial {k}" for k in range(1, trials + 1)), "trial 2 after right / wrong trial 1",
              "train episodes", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(seed_row(m)) + " |" for m in runs]
    accuracy = np.array([[row["accuracy"] for row in m["accuracy_by_trial"]] for m in runs])
    lines.append("| mean (95% t interval over seeds) | " + " | ".join(mean_interval(accuracy[:, k])
                                                                      for k in range(trials)) + " | | | |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    runs = [load(Path(d)) for d in argv]
    options = runs[0]["test_objects"]
    print(f"Held-out {options['holdout']} of {options['objects']}, {options['positions']} positions, "
          f"{runs[0]['episodes']} test episodes per seed. Paper (trial 1 | later): {PAPER}.\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
