"""Markdown rows for results/foraging/README.md from runs' eval metrics.json (run from the repo root):

    python results/foraging/variants_table.py runs/forage-blocksgeometric-5-{0,1,2}/eval ...
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for agent


def stay_rates_from_csv(eval_dir: Path) -> dict:
    """For evaluations made before metrics.json carried stay_rates."""
    import numpy as np
    import pandas as pd

    from agent.analysis.foraging import stay_rates

    trials = pd.read_csv(eval_dir / "trials.csv", usecols=["episode", "action", "reward"])
    return stay_rates({k: np.asarray(v) for k, v in trials.items()})


def row(eval_dir: Path) -> str:
    m = json.loads((eval_dir / "metrics.json").read_text())
    reg = m["lagged_regression"]
    k, ci = reg["reward_kernel"], reg["reward_kernel_ci95"]
    lags = " | ".join(f"{k[i]:.2f} [{ci[i][0]:.2f}, {ci[i][1]:.2f}]" for i in (0, 2, 4))
    s = m.get("stay_rates") or stay_rates_from_csv(eval_dir)
    options = m["task_options"]
    low, high = m["matching_slope_ci95"]
    return (f"| {eval_dir.parent.name}{'' if eval_dir.name == 'eval' else ' (' + eval_dir.name + ')'} | {options.get('blocks', '2-4')} | {options.get('changeover', 'none')} | "
            f"{json.loads((eval_dir.parent / 'config.json').read_text())['seed']} | {lags} | {'yes' if m['reward_kernel_decays'] else 'no'} | "
            f"{s['stay']:.2f} ({s['win_stay']:.2f} / {s['lose_stay']:.2f}) | {reg['choice_kernel'][0]:.2f} | "
            f"[{low:.2f}, {high:.2f}] | {m['mean_reward_per_trial']:.3f} | {m.get('train_seconds', float('nan')):.0f} | "
            f"{m['eval_seconds']:.0f} |")


def kernel(eval_dir: Path) -> str:
    m = json.loads((eval_dir / "metrics.json").read_text())
    return f"| {eval_dir.parent.name} ({eval_dir.name}) | " + " ".join(
        f"{x:.2f}" for x in m["lagged_regression"]["reward_kernel"]) + " |"


if __name__ == "__main__":
    print("| run | blocks (test) | changeover | seed | lag 1 | lag 3 | lag 5 | decays | stay (win / lose) | "
          "choice lag 1 | matching slope | reward per trial | train s | eval s |")
    print("| --- " * 14 + "|")
    dirs = [Path(p) for p in sys.argv[1:]]
    for d in dirs:
        print(row(d))
    print()
    for d in dirs:
        print(kernel(d))
