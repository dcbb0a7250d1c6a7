"""Harlow analyses (Harlow 1949; Wang et al. 2018 Fig. 6).

- Accuracy by trial of an episode with its Wilson 95% interval, for the final weights and for
  the weights saved at each tenth of training (Fig. 6c): learning to learn shows as trial 1 at
  chance and trials 2..6 near perfect, a gap that opens as training goes on.
- Trial 2 split by trial 1's outcome: a learner of the task stays after a reward and switches
  after a loss, so both halves should be near perfect.
- Stimulus-blind ceiling: the best that a strategy can score which never looks at the images but
  counts the sides the rewarded object took so far. With balanced positions that shortcut beats
  chance from trial 2 on, so accuracy below this line does not prove the images were compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Rectangle

from agent.simulations.figures import new_figure, plt, save_figure
from agent.simulations.harlow.objects import IMAGE_SIDE

QUANTILES = 10
EPISODES_SHOWN = 4
NO_CHOICE = 0  # the fixate action, taken when the images are up: no object chosen


def proportion(successes: np.ndarray) -> dict:
    """Fraction of True with its Wilson 95% interval (NaN when there is nothing to count)."""
    from statsmodels.stats.proportion import proportion_confint

    n = int(len(successes))
    if n == 0:
        return {"accuracy": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    count = int(np.sum(successes))
    low, high = proportion_confint(count, n, alpha=0.05, method="wilson")
    return {"accuracy": count / n, "ci95": [float(low), float(high)], "n": n}


def trial_count(trials: dict[str, np.ndarray]) -> int:
    return int(trials["trial"].max()) + 1


def accuracy_by_trial(trials: dict[str, np.ndarray]) -> list[dict]:
    """Per trial of the episode (1-based): accuracy, ci95 and n; a withheld choice is an error."""
    correct = trials["reward"] > 0
    return [{"trial": k + 1, **proportion(correct[trials["trial"] == k])} for k in range(trial_count(trials))]


def trial2_after_trial1(trials: dict[str, np.ndarray]) -> dict[str, dict]:
    """Accuracy on trial 2, split by whether the same episode's trial 1 was correct."""
    correct = trials["reward"] > 0
    first, second = trials["trial"] == 0, trials["trial"] == 1
    # rows are sorted by episode, so each second trial finds its episode's first by search
    matching_first = np.searchsorted(trials["episode"][first], trials["episode"][second])
    first_correct = correct[first][matching_first]
    return {"correct": proportion(correct[second][first_correct]),
            "wrong": proportion(correct[second][~first_correct])}


def stimulus_blind_ceiling(trials: dict[str, np.ndarray], positions: str) -> list[float]:
    """Per trial, the expected accuracy of the best strategy that ignores the images but knows
    the episode's past sides (outcomes reveal them) and how positions are drawn.

    Independent sides carry no information: 0.5. Balanced sides fix how many of the episode's
    trials put the rewarded object left, so the counter picks the side with more placements
    left and scores max(remaining left, remaining right) / remaining, averaged over the test
    episodes' actual side sequences. (The episode's left total is taken from the data; with an
    even length, the only one the task plays by default, the counter knows it exactly.)"""
    if positions != "balanced":
        return [0.5] * trial_count(trials)
    rewarded_left = (trials["rewarded_id"] == trials["left_id"]).astype(int)
    _, episode_index = np.unique(trials["episode"], return_inverse=True)
    length = np.bincount(episode_index)
    left_total = np.bincount(episode_index, weights=rewarded_left)
    lefts_before_row = np.cumsum(rewarded_left) - rewarded_left
    first_row = np.r_[0, np.cumsum(length)[:-1]]
    lefts_so_far = lefts_before_row - lefts_before_row[first_row][episode_index]
    remaining = length[episode_index] - trials["trial"]
    remaining_left = left_total[episode_index] - lefts_so_far
    best_side = np.maximum(remaining_left, remaining - remaining_left) / remaining
    return [float(best_side[trials["trial"] == k].mean()) for k in range(trial_count(trials))]


def quantile_curves(quantile_trials: dict[int, dict[str, np.ndarray]]) -> dict[int, list[dict]]:
    return {q: accuracy_by_trial(quantile_trials[q]) for q in sorted(quantile_trials)}


def quantile_colors():
    """(colormap, norm): one discrete shade per quantile, light (early) to dark (late); the
    palest tenth of Blues is skipped so the first quantile stays visible on white."""
    cmap = ListedColormap(plt.get_cmap("Blues")(np.linspace(0.3, 1.0, QUANTILES)))
    return cmap, BoundaryNorm(np.arange(0.5, QUANTILES + 1), QUANTILES)


def plot_accuracy(final: list[dict], curves: dict[int, list[dict]], ceiling: list[float], title: str,
                  train_episodes: int, path: Path) -> str:
    fig, (ax,) = new_figure(1, width_per_column=5.5, height=4.0)
    trial = np.array([row["trial"] for row in final])
    cmap, norm = quantile_colors()
    for q, curve in curves.items():
        ax.plot(trial, [100 * row["accuracy"] for row in curve], "o-", color=cmap(norm(q)), lw=1.2, ms=3)
    accuracy = np.array([100 * row["accuracy"] for row in final])
    ci = np.array([[100 * v for v in row["ci95"]] for row in final])
    # clipped: at 0% or 100% Wilson's bound can miss the estimate by a rounding error, which errorbar refuses
    errors = np.clip([accuracy - ci[:, 0], ci[:, 1] - accuracy], 0, None)
    ax.errorbar(trial, accuracy, yerr=errors, fmt="o-", color="k", lw=2.5,
                capsize=3, label="final weights (95% CI)")
    ax.plot(trial, [100 * v for v in ceiling], "--", color="0.5", label="stimulus-blind ceiling")
    ax.axhline(50, color="k", lw=0.8, ls=":", label="chance")
    ax.set_xticks(trial)
    ax.set_ylim(0, 105)
    ax.set_xlabel("trial")
    ax.set_ylabel("% correct")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    if curves:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, ticks=range(1, QUANTILES + 1))
        bar.set_label(f"training quantile (tenths of {train_episodes:,} episodes)", fontsize=8)
    return save_figure(fig, path)


def learning_curve(curves: dict[int, list[dict]], episodes: dict[int, int]) -> list[dict]:
    """Per training quantile: the episodes trained by then and accuracy on trials 1 and 2."""
    return [{"quantile": q, "episodes": episodes.get(q), "trial1": curve[0]["accuracy"],
             "trial2": curve[1]["accuracy"] if len(curve) > 1 else float("nan"),
             "trial2_ci95": curve[1]["ci95"] if len(curve) > 1 else [float("nan")] * 2}
            for q, curve in curves.items()]


def plot_learning_curve(curve: list[dict], path: Path) -> str:
    """Trial-2 accuracy (the learning-to-learn signature) and trial 1 against training episodes."""
    fig, (ax,) = new_figure(1, width_per_column=4.5, height=3.4)
    episodes = np.array([row["episodes"] for row in curve], dtype=float)
    second = np.array([100 * row["trial2"] for row in curve])
    ci = np.array([[100 * v for v in row["trial2_ci95"]] for row in curve])
    ax.fill_between(episodes, ci[:, 0], ci[:, 1], color="tab:blue", alpha=0.25, lw=0)
    ax.plot(episodes, second, "o-", color="tab:blue", label="trial 2 (95% CI)")
    ax.plot(episodes, [100 * row["trial1"] for row in curve], "s--", color="0.5", ms=3, label="trial 1")
    ax.axhline(50, color="k", lw=0.8, ls=":")
    ax.set_ylim(0, 105)
    ax.set_xlabel("training episodes")
    ax.set_ylabel("% correct on held-out images")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def plot_episodes(trials: dict[str, np.ndarray], images: np.ndarray, path: Path,
                  episodes_shown: int = EPISODES_SHOWN) -> str:
    """The first test episodes, one row each: per trial the left and right image, the chosen one
    boxed (the agent's gaze), the rewarded one starred, the reward in the title."""
    shown = np.unique(trials["episode"])[:episodes_shown]
    columns = trial_count(trials)
    fig, axes = plt.subplots(len(shown), columns, figsize=(1.4 * columns, 1.25 * len(shown)), squeeze=False)
    gap = np.full((IMAGE_SIDE, 1), np.nan)  # NaN draws as the white background between the two images
    for row, episode in zip(axes, shown):
        for ax, i in zip(row, np.flatnonzero(trials["episode"] == episode)):
            left_id, right_id = int(trials["left_id"][i]), int(trials["right_id"][i])
            pair = np.hstack([images[left_id].reshape(IMAGE_SIDE, IMAGE_SIDE), gap,
                              images[right_id].reshape(IMAGE_SIDE, IMAGE_SIDE)])
            ax.imshow(pair, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            origin = {left_id: -0.5, right_id: IMAGE_SIDE + 0.5}  # x of each image's left edge
            if trials["action"][i] != NO_CHOICE:
                ax.add_patch(Rectangle((origin[int(trials["chosen_id"][i])], -0.5), IMAGE_SIDE, IMAGE_SIDE,
                                       fill=False, edgecolor="tab:orange", lw=2.5))
            ax.plot(origin[int(trials["rewarded_id"][i])] + IMAGE_SIDE / 2, IMAGE_SIDE + 0.6, "*",
                    color="tab:green", ms=8)
            ax.set_ylim(IMAGE_SIDE + 1.5, -0.5)
            reward = trials["reward"][i]
            label = "no choice" if trials["action"][i] == NO_CHOICE else f"{reward:+g}"
            ax.set_title(f"trial {int(trials['trial'][i]) + 1}: {label}", fontsize=8,
                         color="tab:green" if reward > 0 else "tab:red")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(f"episode {int(episode)}", fontsize=8)
    fig.suptitle("orange box: the agent's choice; green star: the rewarded object", fontsize=9)
    return save_figure(fig, path)


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    task, options = context["task"], context["task"].options
    final = accuracy_by_trial(trials)
    curves = quantile_curves(context.get("quantile_trials") or {})
    ceiling = stimulus_blind_ceiling(trials, options["positions"])
    title = (f"Harlow: held-out {options['holdout']} of {options['objects']}, {options['positions']} positions "
             f"({len(np.unique(trials['episode']))} episodes)")
    out_dir = Path(out_dir)
    figures = [plot_accuracy(final, curves, ceiling, title, context["config"].episodes,
                             out_dir / "harlow_accuracy.png"),
               plot_episodes(trials, task.objects.images, out_dir / "harlow_episodes.png")]
    curve = learning_curve(curves, context.get("quantile_episodes") or {})
    if curve and all(row["episodes"] is not None for row in curve):
        figures.append(plot_learning_curve(curve, out_dir / "harlow_learning_curve.png"))
    return {
        "accuracy_by_trial": final,
        "trial2_after_trial1": trial2_after_trial1(trials),
        "no_choice_rate": float(np.mean(trials["action"] == NO_CHOICE)),
        "stimulus_blind_ceiling": ceiling,
        "quantile_accuracy": {str(q): [row["accuracy"] for row in curve] for q, curve in curves.items()},
        "quantile_ci95": {str(q): [row["ci95"] for row in curve] for q, curve in curves.items()},
        "learning_curve": curve,
        "test_objects": {name: options[name] for name in ("holdout", "objects", "positions")},
        "figures": figures,
    }


def summary_lines(metrics: dict) -> list[str]:
    """What eval prints for a Harlow run: accuracy by trial, the trial-2 split, the shortcut's line."""
    objects = metrics["test_objects"]
    lines = [f"accuracy by trial (held-out {objects['holdout']}, {objects['positions']} positions):"]
    for row in metrics["accuracy_by_trial"]:
        low, high = row["ci95"]
        lines.append(f"  trial {row['trial']}: {row['accuracy']:.1%} [{low:.1%}, {high:.1%}] (n={row['n']})")
    split = metrics["trial2_after_trial1"]
    lines.append("trial 2 after trial 1 " + ", ".join(
        f"{outcome}: {split[outcome]['accuracy']:.1%} (n={split[outcome]['n']})" for outcome in ("correct", "wrong")))
    lines.append("stimulus-blind ceiling by trial: " + " ".join(f"{v:.0%}" for v in metrics["stimulus_blind_ceiling"]))
    lines.append(f"no choice: {metrics['no_choice_rate']:.1%} of choice steps")
    return lines
