"""Markdown tables for results/foraging/README.md, run from the repository root:

    python -m agent.simulations.foraging.tables default results/reproduce_sim1/summary.json
    python -m agent.simulations.foraging.tables variants runs/forage-blocksgeometric-5-{0,1,2}/eval ...

default: the default (geometric-5 training) section's tables, from a reproduce invocation's
summary.json and its runs' eval metrics.json. variants: one row per evaluation of the variants
sections, from each eval's metrics.json.
"""

import json
import sys
from pathlib import Path


def cell(values, ci, i):
    return f"{values[i]:.2f} [{ci[i][0]:.2f}, {ci[i][1]:.2f}]"


def default_tables(summary_path: Path) -> None:
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


def stay_rates_from_csv(eval_dir: Path) -> dict:
    """For evaluations made before metrics.json carried stay_rates."""
    import numpy as np
    import pandas as pd

    from agent.simulations.foraging.analysis import stay_rates

    trials = pd.read_csv(eval_dir / "trials.csv", usecols=["episode", "action", "reward"])
    return stay_rates({k: np.asarray(v) for k, v in trials.items()})


def variant_row(eval_dir: Path) -> str:
    m = json.loads((eval_dir / "metrics.json").read_text())
    reg = m["lagged_regression"]
    k, ci = reg["reward_kernel"], reg["reward_kernel_ci95"]
    lags = " | ".join(cell(k, ci, i) for i in (0, 2, 4))
    s = m.get("stay_rates") or stay_rates_from_csv(eval_dir)
    options = m["task_options"]
    low, high = m["matching_slope_ci95"]
    return (f"| {eval_dir.parent.name}{'' if eval_dir.name == 'eval' else ' (' + eval_dir.name + ')'} | {options.get('blocks', '2-4')} | {options.get('changeover', 'none')} | "
            f"{json.loads((eval_dir.parent / 'config.json').read_text())['seed']} | {lags} | {'yes' if m['reward_kernel_decays'] else 'no'} | "
            f"{s['stay']:.2f} ({s['win_stay']:.2f} / {s['lose_stay']:.2f}) | {reg['choice_kernel'][0]:.2f} | "
            f"[{low:.2f}, {high:.2f}] | {m['mean_reward_per_trial']:.3f} | {m.get('train_seconds', float('nan')):.0f} | "
            f"{m['eval_seconds']:.0f} |")


def variant_kernel(eval_dir: Path) -> str:
    m = json.loads((eval_dir / "metrics.json").read_text())
    return f"| {eval_dir.parent.name} ({eval_dir.name}) | " + " ".join(
        f"{x:.2f}" for x in m["lagged_regression"]["reward_kernel"]) + " |"


def variants_table(eval_dirs: list[Path]) -> None:
    print("| run | blocks (test) | changeover | seed | lag 1 | lag 3 | lag 5 | decays | stay (win / lose) | "
          "choice lag 1 | matching slope | reward per trial | train s | eval s |")
    print("| --- " * 14 + "|")
    for d in eval_dirs:
        print(variant_row(d))
    print()
    for d in eval_dirs:
        print(variant_kernel(d))


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("default", "variants"):
        sys.exit(__doc__)
    if argv[0] == "default":
        default_tables(Path(argv[1]))
    else:
        variants_table([Path(p) for p in argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
