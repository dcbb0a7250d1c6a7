"""Reversal analyses: RPEs that reflect inferred value (Bromberg-Martin et al. 2010; Wang et al. 2018 Fig. 4).

Aligned to each reversal (a block start after an episode's first trial): the cue shown on the
reversal trial is the *experienced* cue X (its outcome reveals the change); the other cue Y is
the *inferred* one until it is first shown. For Y we compare the cue-onset RPE (`rpe_cue`,
gamma * V(cue) - V(fixation)) at three points:
  pre:    Y's presentations in the block before the reversal, from STEADY_FROM trials into it;
  first:  Y's first presentation after the reversal (its new value never experienced);
  steady: Y's presentations in the new block from STEADY_FROM trials into it.
Inference index = (first - pre) / (steady - pre), means over reversals: 0 for a learner that
updates a cue's value only when it sees that cue, 1 for one that infers the whole change from
the other cue. Error trials are excluded (as Bromberg-Martin did): a reversal counts only if the
reversal trial was answered correctly (else the change was not experienced: the reward was 0)
and Y's first presentation was too; pre and steady average correct trials only.
Intervals: 95% percentile bootstrap over reversals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.simulations.figures import new_figure, save_figure
from agent.simulations.intervals import bootstrap_interval

STEADY_FROM = 10  # trials into a block after which a cue's value counts as settled (blocks are >= 15)
FIGURE_TRIALS = 12  # trials after the reversal shown in the figure
DIRECTIONS = ("newly_big", "newly_small")


def reversal_table(trials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per usable reversal: newly_big (the inferred cue Y became big), Y's RPE at
    pre / first / steady, and X's RPE on the reversal trial; plus counts of excluded reversals."""
    episode, since = trials["episode"], trials["trials_since_reversal"]
    cue, correct, rpe = trials["cue"], trials["action"] == trials["cue"], trials["rpe_cue"]
    block_start = np.flatnonzero(since == 0)
    block_end = np.r_[block_start[1:], len(episode)]
    rows = {name: [] for name in ("newly_big", "pre", "first", "steady", "experienced", "first_trial")}
    # no_steady_state: the episode ended before the new block (or the old one) showed Y settled
    excluded = {"reversal_trial_error": 0, "inferred_cue_error": 0, "inferred_cue_not_shown": 0, "no_steady_state": 0}
    for b in range(1, len(block_start)):
        start, end = block_start[b], block_end[b]
        previous_start = block_start[b - 1]
        if episode[start] != episode[previous_start]:  # an episode's first block: no reversal before it
            continue
        if not correct[start]:
            excluded["reversal_trial_error"] += 1
            continue
        y = 1 - cue[start]
        shown = start + 1 + np.flatnonzero(cue[start + 1 : end] == y)
        if len(shown) == 0:
            excluded["inferred_cue_not_shown"] += 1
            continue
        if not correct[shown[0]]:
            excluded["inferred_cue_error"] += 1
            continue
        before = np.arange(previous_start + STEADY_FROM, start)
        after = np.arange(start + STEADY_FROM, end)
        before = before[(cue[before] == y) & correct[before]]
        after = after[(cue[after] == y) & correct[after]]
        if len(before) == 0 or len(after) == 0:
            excluded["no_steady_state"] += 1
            continue
        rows["newly_big"].append(trials["big_cue"][start] == y)
        rows["pre"].append(rpe[before].mean())
        rows["first"].append(rpe[shown[0]])
        rows["steady"].append(rpe[after].mean())
        rows["experienced"].append(rpe[start])
        rows["first_trial"].append(since[shown[0]])
    table = {name: np.asarray(values, dtype=bool if name == "newly_big" else float) for name, values in rows.items()}
    table["excluded"] = excluded
    return table


def _index(pre: np.ndarray, first: np.ndarray, steady: np.ndarray, axis: int = -1) -> np.ndarray:
    return (first.mean(axis) - pre.mean(axis)) / (steady.mean(axis) - pre.mean(axis))


def _mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return values.mean(axis)


def inference(table: dict[str, np.ndarray]) -> dict:
    """Per direction: Y's mean RPE at pre / first / steady with intervals, the inference index
    with its interval, and whether the first RPE already has the sign of Y's new value. Pooled:
    the index over both directions, RPEs sign-flipped for newly small cues so both point up."""
    result = {}
    for direction in DIRECTIONS:
        keep = table["newly_big"] if direction == "newly_big" else ~table["newly_big"]
        pre, first, steady = (table[name][keep] for name in ("pre", "first", "steady"))
        entry = {"n_reversals": int(keep.sum())}
        for name, values in (("pre", pre), ("first", first), ("steady", steady)):
            entry[f"rpe_{name}"] = {"mean": float(values.mean()) if len(values) else float("nan"),
                                    "ci95": bootstrap_interval(_mean, values)}
        entry["inference_index"] = {"value": float(_index(pre, first, steady)) if len(pre) else float("nan"),
                                    "ci95": bootstrap_interval(_index, pre, first, steady)}
        new_sign = 1.0 if direction == "newly_big" else -1.0
        entry["first_has_new_sign"] = bool(new_sign * entry["rpe_first"]["mean"] > 0)
        result[direction] = entry
    sign = np.where(table["newly_big"], 1.0, -1.0)
    pre, first, steady = (sign * table[name] for name in ("pre", "first", "steady"))
    result["pooled"] = {"n_reversals": int(len(pre)),
                        "inference_index": {"value": float(_index(pre, first, steady)) if len(pre) else float("nan"),
                                            "ci95": bootstrap_interval(_index, pre, first, steady)}}
    return result


def rpe_after_reversal(trials: dict[str, np.ndarray], table_trials: int = FIGURE_TRIALS) -> dict:
    """Mean cue-onset RPE by trials since the reversal (0..table_trials-1), for the experienced
    cue X and the other cue Y, split by whether that cue became big or small (correct trials)."""
    episode, since, cue = trials["episode"], trials["trials_since_reversal"], trials["cue"]
    correct = trials["action"] == cue
    starts = np.flatnonzero((since == 0) & (trials["trial"] > 0))
    sums = np.zeros((2, 2, table_trials))  # (experienced / inferred cue, became big / small, trial)
    counts = np.zeros_like(sums)
    for start in starts:
        x = cue[start]
        for k in range(table_trials):
            i = start + k
            if i >= len(episode) or episode[i] != episode[start] or (k > 0 and since[i] == 0):
                break
            if not correct[i]:
                continue
            which = 0 if cue[i] == x else 1
            became = 0 if trials["big_cue"][i] == cue[i] else 1
            sums[which, became, k] += trials["rpe_cue"][i]
            counts[which, became, k] += 1
    with np.errstate(invalid="ignore"):
        return {"mean": sums / counts, "count": counts}


def plot_reversal(curves: dict, summary: dict, path: Path) -> str:
    fig, (ax_big, ax_small, ax_bars) = new_figure(3, width_per_column=4.2, height=3.4)
    k = np.arange(curves["mean"].shape[-1])
    for became, ax, title in ((0, ax_big, "cue that became big"), (1, ax_small, "cue that became small")):
        ax.plot(k, curves["mean"][0, became], "o-", color="0.4", label="experienced (shown on the reversal trial)")
        ax.plot(k, curves["mean"][1, became], "s-", color="tab:red", label="inferred (the other cue)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("trials since reversal")
        ax.set_ylabel("cue-onset RPE")
        ax.set_title(title)
    ax_big.legend(fontsize=7)
    labels = ("pre", "first", "steady")
    for offset, direction, color in ((-0.2, "newly_big", "tab:green"), (0.2, "newly_small", "tab:purple")):
        entry = summary[direction]
        means = [entry[f"rpe_{name}"]["mean"] for name in labels]
        lows = [m - entry[f"rpe_{name}"]["ci95"][0] for m, name in zip(means, labels)]
        highs = [entry[f"rpe_{name}"]["ci95"][1] - m for m, name in zip(means, labels)]
        ax_bars.bar(np.arange(3) + offset, means, width=0.4, color=color, yerr=[lows, highs],
                    label=f"{direction.replace('_', ' ')} (index {entry['inference_index']['value']:.2f})")
    ax_bars.set_xticks(range(3), ["before\nreversal", "first\npresentation", "steady\nstate"])
    ax_bars.axhline(0, color="k", lw=0.8)
    ax_bars.set_ylabel("inferred cue's onset RPE")
    ax_bars.set_title(f"Inference index {summary['pooled']['inference_index']['value']:.2f}")
    ax_bars.legend(fontsize=7)
    return save_figure(fig, path)


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    table = reversal_table(trials)
    summary = inference(table)
    curves = rpe_after_reversal(trials)
    figure = plot_reversal(curves, summary, Path(out_dir) / "reversal_rpe.png")
    correct = trials["action"] == trials["cue"]
    return {
        "inference": summary,
        "excluded_reversals": table["excluded"],
        "accuracy": float(correct.mean()),
        # pressing the shown cue's action is all the behaviour needs; a cue-blind policy earns half
        "cue_blind_reward_per_trial": float(np.mean(np.where(trials["cue"] == trials["big_cue"], 1.0, 0.2)) / 2),
        "meets_target": bool(summary["newly_big"]["first_has_new_sign"] and summary["newly_small"]["first_has_new_sign"]
                             and summary["pooled"]["inference_index"]["value"] >= 0.5),
        "figures": [figure],
    }


def summary_lines(metrics: dict) -> list[str]:
    lines = []
    for direction in DIRECTIONS:
        entry = metrics["inference"][direction]
        lines.append(f"{direction.replace('_', ' ')}: inferred cue's onset RPE pre {entry['rpe_pre']['mean']:+.3f}, "
                     f"first {entry['rpe_first']['mean']:+.3f}, steady {entry['rpe_steady']['mean']:+.3f}; "
                     f"index {entry['inference_index']['value']:.2f} ({entry['n_reversals']} reversals)")
    pooled = metrics["inference"]["pooled"]["inference_index"]
    lines.append(f"inference index {pooled['value']:.2f} [{pooled['ci95'][0]:.2f}, {pooled['ci95'][1]:.2f}]; "
                 f"accuracy {metrics['accuracy']:.3f}; target met: {metrics['meets_target']}")
    return lines
