"""Risky-vs-safe analyses (Stopper et al. 2014; Wang et al. 2018 Fig. 7).

eval plays the same test episodes under control and each manipulation (the `condition`
column). Measured on free trials only (forced trials show no preference):
  - control: P(risky) in p = 0.5 blocks and in p = 0.125 blocks, and their difference;
  - per condition: P(risky) on trial t + 1 after each outcome type on trial t (risky win,
    risky loss, safe reward), t and t + 1 both free and in the same episode, and its change
    against control on the same test episodes.
Intervals: 95% percentile bootstrap over test episodes (an episode's trials are not
independent); a change against control resamples the same episodes in both conditions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.simulations.figures import new_figure, save_figure
from agent.simulations.intervals import bootstrap_interval
from agent.simulations.risky_safe.task import MANIPULATIONS, RISKY_PROBS

CONDITIONS = tuple(MANIPULATIONS)
OUTCOMES = ("risky_win", "risky_loss", "safe_reward")
# the outcome each manipulation targets and the direction it should move P(risky) (paper Fig. 7)
TARGETS = {"stim_after_risky_loss": ("risky_loss", +1), "inhibit_after_risky_win": ("risky_win", -1),
           "inhibit_after_safe_reward": ("safe_reward", None)}  # None: reported, no predicted sign
CRITERION_BLOCK_DIFFERENCE = 0.2


def _per_episode(episode: np.ndarray, hit: np.ndarray, count: np.ndarray, episodes: int) -> np.ndarray:
    """(2, episodes): per test episode, the sum of hits and of counted trials."""
    sums = np.zeros((2, episodes))
    np.add.at(sums[0], episode, hit * count)
    np.add.at(sums[1], episode, count)
    return sums


def _pooled(hits, counted, baseline_hits=None, baseline_counted=None, axis=-1):
    """hits / counted summed over episodes, minus the baseline's when given."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = hits.sum(axis) / counted.sum(axis)
        return value if baseline_hits is None else value - baseline_hits.sum(axis) / baseline_counted.sum(axis)


def _ratio_interval(sums: np.ndarray, baseline: np.ndarray | None = None) -> dict:
    """Pooled proportion (hits / counted) and its 95% bootstrap interval over episodes; with a
    baseline (same shape, same episodes) the difference against it, episodes resampled jointly."""
    samples = (*sums,) if baseline is None else (*sums, *baseline)
    return {"value": float(_pooled(*samples)), "ci95": bootstrap_interval(_pooled, *samples),
            "n": int(sums[1].sum())}


def condition_rows(trials: dict[str, np.ndarray], condition: str) -> dict[str, np.ndarray]:
    keep = trials["condition"] == CONDITIONS.index(condition)
    return {name: values[keep] for name, values in trials.items() if len(values) == len(keep)}


def outcome_of(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Per trial: index into OUTCOMES (a risky loss is a risky press that paid 0)."""
    risky = rows["action"] == rows["risky_action"]
    return np.where(risky, np.where(rows["reward"] > 0, 0, 1), 2)


def choice_after_outcome(rows: dict[str, np.ndarray], episodes: int) -> dict[str, np.ndarray]:
    """Per outcome type: (2, episodes) sums of risky choices on the next free trial and of such trials."""
    same = rows["episode"][1:] == rows["episode"][:-1]
    free = rows["forced"] == 0
    pair = same & free[:-1] & free[1:]
    next_risky = (rows["action"][1:] == rows["risky_action"][1:]).astype(float)
    outcome = outcome_of(rows)[:-1]
    return {name: _per_episode(rows["episode"][:-1], next_risky, (pair & (outcome == k)).astype(float), episodes)
            for k, name in enumerate(OUTCOMES)}


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    episodes = int(trials["episode"].max()) + 1
    present = [c for c in CONDITIONS if (trials["condition"] == CONDITIONS.index(c)).any()]
    control = condition_rows(trials, "control")
    free = (control["forced"] == 0).astype(float)
    risky = (control["action"] == control["risky_action"]).astype(float)
    by_block = {}
    block_sums = {}
    for p in RISKY_PROBS:
        counted = free * np.isclose(control["p_risky"], p)
        block_sums[p] = _per_episode(control["episode"], risky, counted, episodes)
        by_block[str(p)] = _ratio_interval(block_sums[p])
    difference = _ratio_interval(block_sums[RISKY_PROBS[1]], baseline=block_sums[RISKY_PROBS[0]])

    after = {c: choice_after_outcome(condition_rows(trials, c), episodes) for c in present}
    after_table = {c: {o: _ratio_interval(after[c][o]) for o in OUTCOMES} for c in present}
    effects = {}
    for condition in present:
        if condition == "control":
            continue
        outcome, sign = TARGETS[condition]
        change = _ratio_interval(after[condition][outcome], baseline=after["control"][outcome])
        low, high = change["ci95"]
        effects[condition] = {"outcome": outcome, "change": change, "predicted_sign": sign,
                              "as_predicted": None if sign is None else bool(low > 0 if sign > 0 else high < 0)}
    figure = plot_risky_safe(by_block, after_table, Path(out_dir) / "risky_safe.png")
    meets = difference["value"] > CRITERION_BLOCK_DIFFERENCE and all(
        effects.get(c, {}).get("as_predicted") for c in ("stim_after_risky_loss", "inhibit_after_risky_win"))
    return {"p_risky_by_block": by_block, "block_difference": difference, "p_risky_after_outcome": after_table,
            "manipulation_effects": effects, "meets_target": bool(meets), "figures": [figure]}


def plot_risky_safe(by_block: dict, after_table: dict, path: Path) -> str:
    fig, (ax_block, ax_after) = new_figure(2, width_per_column=4.5, height=3.4)
    for i, p in enumerate(RISKY_PROBS):
        entry = by_block[str(p)]
        ax_block.bar(i, entry["value"], color="0.6",
                     yerr=[[entry["value"] - entry["ci95"][0]], [entry["ci95"][1] - entry["value"]]])
    ax_block.set_xticks(range(len(RISKY_PROBS)), [f"p = {p}" for p in RISKY_PROBS])
    ax_block.set_ylim(0, 1)
    ax_block.set_ylabel("P(risky), free trials")
    ax_block.set_title("Control, by block")
    width = 0.8 / len(after_table)
    for j, (condition, row) in enumerate(after_table.items()):
        means = [row[o]["value"] for o in OUTCOMES]
        errors = [[m - row[o]["ci95"][0] for m, o in zip(means, OUTCOMES)],
                  [row[o]["ci95"][1] - m for m, o in zip(means, OUTCOMES)]]
        ax_after.bar(np.arange(len(OUTCOMES)) + (j - (len(after_table) - 1) / 2) * width, means, width,
                     yerr=errors, label=condition.replace("_", " "))
    ax_after.set_xticks(range(len(OUTCOMES)), [o.replace("_", " ") for o in OUTCOMES])
    ax_after.set_ylim(0, 1)
    ax_after.set_ylabel("P(risky) on the next free trial")
    ax_after.set_title("After each outcome, per condition")
    ax_after.legend(fontsize=7)
    return save_figure(fig, path)


def summary_lines(metrics: dict) -> list[str]:
    blocks = metrics["p_risky_by_block"]
    diff = metrics["block_difference"]
    lines = [f"control P(risky), free trials: " + ", ".join(f"p={p} {v['value']:.3f}" for p, v in blocks.items())
             + f"; difference {diff['value']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]"]
    for condition, effect in metrics["manipulation_effects"].items():
        change = effect["change"]
        lines.append(f"{condition}: P(risky) after {effect['outcome'].replace('_', ' ')} {change['value']:+.3f} "
                     f"[{change['ci95'][0]:+.3f}, {change['ci95'][1]:+.3f}] vs control")
    lines.append(f"target met: {metrics['meets_target']}")
    return lines
