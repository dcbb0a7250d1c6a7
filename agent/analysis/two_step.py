"""Two-step analyses (Wang et al. 2018 Fig. 5; Daw et al. 2011).

- Stay probability: P(repeat the first-stage action on trial t+1) given trial t's reward and
  transition (common/rare), four bars as in Fig. 5b.
- Logistic regression of stay on reward, transition and reward x transition (each coded +1/-1:
  rewarded/unrewarded, common/rare). Model-free behaviour shows only a reward effect; the
  model-based signature is a positive interaction.
- RPE at the onset of the second stage, delta = gamma * V(stage 2) - V(stage 1) (the stage-1
  step pays nothing), by transition type: model-based values make rare transitions surprising.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.figures import new_figure, p_value_label, save_figure

CONDITIONS = (("common_rewarded", 1, 1), ("rare_rewarded", 1, 0),
              ("common_unrewarded", 0, 1), ("rare_unrewarded", 0, 0))


def consecutive_pairs(trials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per pair of consecutive trials in the same episode: trial t's reward/common and stay."""
    same_episode = trials["episode"][1:] == trials["episode"][:-1]
    return {
        "reward": trials["reward"][:-1][same_episode].astype(int),
        "common": trials["common"][:-1][same_episode].astype(int),
        "stay": (trials["action"][1:] == trials["action"][:-1])[same_episode].astype(int),
    }


def stay_probabilities(pairs: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, rewarded, common in CONDITIONS:
        mask = (pairs["reward"] == rewarded) & (pairs["common"] == common)
        out[name] = float(pairs["stay"][mask].mean()) if mask.any() else float("nan")
    return out


def stay_regression(pairs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Logit(stay) ~ 1 + reward + transition + reward:transition, +1/-1 coding; coef and p."""
    import statsmodels.api as sm

    reward = 2.0 * pairs["reward"] - 1
    transition = 2.0 * pairs["common"] - 1
    design = np.column_stack([np.ones_like(reward), reward, transition, reward * transition])
    try:
        fit = sm.Logit(pairs["stay"], design).fit(disp=0)
        coefs, pvalues = fit.params, fit.pvalues
    except Exception:  # perfect separation, e.g. a policy that always stays
        coefs = pvalues = np.full(4, np.nan)
    names = ("intercept", "reward", "transition", "reward_x_transition")
    return {name: {"coef": float(coefs[i]), "p": float(pvalues[i])} for i, name in enumerate(names)}


def second_stage_rpe(trials: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean RPE at second-stage onset (trials.csv's `rpe`) after common and rare transitions."""
    rpe = trials["rpe"]
    common = trials["common"].astype(bool)
    return {"common": float(rpe[common].mean()), "rare": float(rpe[~common].mean())}


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    pairs = consecutive_pairs(trials)
    stay = stay_probabilities(pairs)
    regression = stay_regression(pairs)
    rpe = second_stage_rpe(trials)

    fig, (ax_stay, ax_reg, ax_rpe) = new_figure(3)
    xs = np.array([0, 1, 3, 4])
    colors = ["tab:blue", "tab:red", "tab:blue", "tab:red"]
    ax_stay.bar(xs, [stay[name] for name, _, _ in CONDITIONS], color=colors)
    ax_stay.set_xticks([0.5, 3.5], ["rewarded", "unrewarded"])
    ax_stay.set_ylim(0, 1.05)
    ax_stay.set_ylabel("stay probability")
    ax_stay.legend(handles=[ax_stay.patches[0], ax_stay.patches[1]], labels=["common", "rare"], ncol=2,
                   loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax_stay.set_title("Stay probabilities (cf. Fig. 5b)")
    names = ["reward", "transition", "reward_x_transition"]
    ax_reg.bar(range(3), [regression[n]["coef"] for n in names], color="0.5")
    for i, n in enumerate(names):
        ax_reg.annotate(p_value_label(regression[n]["p"]), (i, regression[n]["coef"]), ha="center",
                        va="bottom", fontsize=8)
    ax_reg.set_xticks(range(3), ["reward", "transition", "reward x\ntransition"])
    ax_reg.axhline(0, color="k", lw=0.8)
    ax_reg.set_ylabel("logistic regression coefficient")
    ax_reg.set_title("Stay ~ reward * transition")
    ax_rpe.bar([0, 1], [rpe["common"], rpe["rare"]], color=["tab:blue", "tab:red"])
    ax_rpe.set_xticks([0, 1], ["common", "rare"])
    ax_rpe.axhline(0, color="k", lw=0.8)
    ax_rpe.set_ylabel("RPE at second-stage onset")
    ax_rpe.set_title("RPE by transition type")
    figure = save_figure(fig, Path(out_dir) / "two_step_stay.png")

    return {"stay_probability": stay, "stay_regression": regression, "second_stage_rpe": rpe,
            "n_pairs": int(len(pairs["stay"])), "figures": [figure]}


def summary_lines(metrics: dict) -> list[str]:
    stay = metrics["stay_probability"]
    inter = metrics["stay_regression"]["reward_x_transition"]
    p_text = "p < 1e-300 (underflows to 0)" if inter["p"] == 0 else f"p = {inter['p']:.3g}"
    return ["stay probability: " + ", ".join(f"{k} {v:.3f}" for k, v in stay.items()),
            f"reward x transition interaction: coef {inter['coef']:.3f}, {p_text}"]
