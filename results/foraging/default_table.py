"""Markdown tables for results/foraging/README.md's default (geometric-5 training) section, from a
reproduce invocation's summary.json and its runs' eval metrics.json (run from the repo root):

    python results/foraging/default_table.py results/reproduce_sim1/summary.json
"""

import json
import sys
from pathlib import Path


def cell(values, ci, i):
    return f"{values[i]:.2f} [{ci[i][0]:.2f}, {ci[i][1]:.2f}]"


def main(summary_path: Path) -> None:
    summary = json.loads(summary_path.read_text())
    section = next(s for s in summary["simulations"] if s["task"] == "foraging")
    print("| seed | reward kernel lag 1 | lag 3 | lag 5 | lag 1 > 3 > 5 (disjoint) | matching slope | "
          "stay (win / lose) | choice lag 1 | units: action / reward / act x rew / chosen value | "
          "reward per trial | train s (wall) | eval s (wall) |")
    print("| --- " * 12 + "|")
    kernels = []
    for seed in section["seeds"]:
        m = json.loads((Path(seed["run_dir"]) / "eval" / "metrics.json").read_text())
        reg = m["lagged_regression"]
        k, ci = reg["reward_kernel"], reg["reward_kernel_ci95"]
        s, u = m["stay_rates"], m["unit_coding_fraction"]
        low, high = m["matching_slope_ci95"]
        units = " / ".join(f"{100 * u[name]:.0f}%" for name in ("last_action", "last_reward", "action_x_reward",
                                                                  "chosen_value"))
        print(f"| {seed['seed']} | {cell(k, ci, 0)} | {cell(k, ci, 2)} | {cell(k, ci, 4)} | "
              f"{'yes' if m['reward_kernel_decays'] else 'no'} | {m['matching_slope']:.2f} [{low:.2f}, {high:.2f}] | "
              f"{s['stay']:.2f} ({s['win_stay']:.2f} / {s['lose_stay']:.2f}) | {reg['choice_kernel'][0]:.2f} | "
              f"{units} | {m['mean_reward_per_trial']:.3f} | {m['train_seconds']:.0f} ({seed['train_wall_seconds']:.0f}) | "
              f"{m['eval_seconds']:.0f} ({seed['eval_wall_seconds']:.0f}) |")
        kernels.append(f"| {seed['seed']} | " + " ".join(f"{x:.2f}" for x in k) + " |")
    print("\n| seed | reward kernel, lags 1-15 |\n| --- | --- |")
    print("\n".join(kernels))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
