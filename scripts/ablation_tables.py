"""Tables for docs/controls-and-ablations.md from the eval directories under runs/ablate/
(issue #28): two-step stay pattern and interaction, bandit regret at t = 100 against random and
the baselines, risky-safe manipulations with offsets in units of the fed signal's spread.

    python scripts/ablation_tables.py [RUNS_DIR]   (default runs/ablate)
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablate")
GAMMA = 0.9


def runs(task: str):
    for eval_dir in sorted(ROOT.glob(f"{task}*_eval")):
        if (eval_dir / "metrics.json").is_file():
            run = eval_dir.name[: -len("_eval")]
            config = json.loads((ROOT / run / "config.json").read_text())
            yield run, config, json.loads((eval_dir / "metrics.json").read_text()), eval_dir


def read_trials(eval_dir: Path) -> dict[str, np.ndarray]:
    with open(eval_dir / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for key in rows[0]:
        try:
            out[key] = np.array([float(r[key]) for r in rows])
        except ValueError:
            out[key] = np.array([r[key] for r in rows])
    return out


def control_replay(run: Path) -> dict[str, np.ndarray]:
    """The run's control test episodes (eval's seed, 300 episodes) with every recorded column."""
    from agent.commands.evaluate import play_frozen
    from agent.core.config import TrainConfig
    from agent.infra.checkpoint import load_checkpoint

    saved = load_checkpoint(run)
    config = TrainConfig.from_dict(saved["config"])
    options = {**config.task_options, "manipulation": "control"}
    return play_frozen(config, saved["trainer"]["agent"], options, episodes=300, seed=2018, device="cpu",
                       core="fast")[0]


def label(config: dict) -> str:
    return "+".join(config.get("ablate") or []) or "none"


def two_step() -> None:
    print("| run | seed | ablation | reward/trial | stay CR | stay RR | stay CU | stay RU | reward coef | "
          "reward x transition (p) | x transition with `correct` (p) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run, config, m, _ in runs("two_step_"):
        s, r, c = m["stay_probability"], m["stay_regression"], m["stay_regression_with_correct"]
        print(f"| {run} | {config['seed']} | {label(config)} | {m['mean_reward_per_trial']:.3f} | "
              f"{s['common_rewarded']:.3f} | {s['rare_rewarded']:.3f} | {s['common_unrewarded']:.3f} | "
              f"{s['rare_unrewarded']:.3f} | {r['reward']['coef']:.2f} | {r['reward_x_transition']['coef']:.2f} "
              f"({r['reward_x_transition']['p']:.2g}) | {c['reward_x_transition']['coef']:.2f} "
              f"({c['reward_x_transition']['p']:.2g}) |")


def win_stay_lose_shift_regret(arm_probs: np.ndarray, trials: int, seed: int = 2018) -> float:
    """Mean cumulative regret at `trials` of win-stay/lose-shift (first pull random) on these episodes'
    arms: the best a policy that remembers only the last action and reward can do without the trial index."""
    rng = np.random.default_rng(seed)
    episodes = len(arm_probs)
    rows = np.arange(episodes)
    action = rng.integers(0, 2, episodes)
    regret = np.zeros(episodes)
    for _ in range(trials):
        regret += arm_probs.max(1) - arm_probs[rows, action]
        won = rng.random(episodes) < arm_probs[rows, action]
        action = np.where(won, action, 1 - action)
    return float(regret.mean())


def bandits() -> None:
    print("| run | seed | ablation | reward/trial | agent regret@100 (SEM) | P(stay) after win / loss | random | "
          "win-stay lose-shift | Thompson | UCB1 | Gittins | RW |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run, config, m, eval_dir in runs("bandit_"):
        t = read_trials(eval_dir)
        random_regret = float(np.mean([0.5 * abs(p0 - p1) for p0, p1 in zip(t["p_0"], t["p_1"])]) * m["trials_per_episode"])
        g = m["regret_at_last_trial"]
        first = np.r_[True, t["episode"][1:] != t["episode"][:-1]]
        wsls = win_stay_lose_shift_regret(np.column_stack([t["p_0"][first], t["p_1"][first]]), m["trials_per_episode"])
        same = t["episode"][1:] == t["episode"][:-1]
        stay, won = (t["action"][1:] == t["action"][:-1])[same], (t["reward"][:-1] > 0)[same]
        print(f"| {run} | {config['seed']} | {label(config)} | {m['mean_reward_per_trial']:.3f} | {g['agent']:.2f} "
              f"({m['regret_last_trial_sem']:.2f}) | {stay[won].mean():.2f} / {stay[~won].mean():.2f} | "
              f"{random_regret:.2f} | {wsls:.2f} | {g['thompson']:.2f} | {g['ucb1']:.2f} | "
              f"{g['gittins']:.2f} | {g['rescorla_wagner']:.2f} |")


def risky_safe() -> None:
    offsets = {"stim_after_risky_loss": 1.0, "inhibit_after_risky_win": -4.0, "inhibit_after_safe_reward": -1.0}
    print("| run | input | P(risky) p=.5 / p=.125 (diff [CI]) | fed-signal std | stim +1 after risky loss: "
          "offset/std, dP(risky) [CI] | inhibit -4 after risky win | inhibit -1 after safe reward | target met |")
    print("|---|---|---|---|---|---|---|---|")
    diagnostics = []
    for run, config, m, eval_dir in runs("risky_safe_"):
        t = read_trials(eval_dir)
        control = t["condition"] == "control"
        std = float(np.std(t["rpe_raw"][control]))  # the RPE-slot signal without offsets, control episodes
        b, d = m["p_risky_by_block"], m["block_difference"]
        cells = []
        for name, offset in offsets.items():
            e = m["manipulation_effects"][name]["change"]
            cells.append(f"{offset / std:+.2f} sd: {e['value']:+.3f} [{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}]")
        print(f"| {run} | {config['reward_input']}{' +' + label(config) if config.get('ablate') else ''} | "
              f"{b['0.5']['value']:.2f} / {b['0.125']['value']:.2f} ({d['value']:+.2f} [{d['ci95'][0]:+.2f}, "
              f"{d['ci95'][1]:+.2f}]) | {std:.2f} | " + " | ".join(cells) + f" | {m['meets_target']} |")
        # the fed signal against r - (1 - gamma) V (the rpe input's form), and, for td, V_pre(s') against
        # V(s'): the control episodes replayed (trials.csv has no value column) with eval's seed
        t = control_replay(ROOT / run)
        r, v = t["reward"], t["value"]
        fed = t["rpe_fed"] if "rpe_fed" in t else r - (1 - GAMMA) * v
        row = {"run": run, "corr(fed, r - (1-g)V)": float(np.corrcoef(fed, r - (1 - GAMMA) * v)[0, 1])}
        if "rpe_fed" in t:
            same = np.r_[t["episode"][1:] == t["episode"][:-1], False]
            v_pre = (fed - r + v) / GAMMA
            v_next = np.r_[v[1:], 0.0]
            row["corr(V_pre(s'), V(s'))"] = float(np.corrcoef(v_pre[same], v_next[same])[0, 1])
            row["mean |V_pre - V(s')|"] = float(np.mean(np.abs(v_pre[same] - v_next[same])))
            row["mean |V(s')|"] = float(np.mean(np.abs(v_next[same])))
            row["std(V(s'))"] = float(np.std(v_next[same]))
        diagnostics.append(row)
    print()
    for row in diagnostics:
        print("- " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    for title, table in (("two_step", two_step), ("bandits", bandits), ("risky_safe", risky_safe)):
        print(f"\n### {title}\n")
        table()
