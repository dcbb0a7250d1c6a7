"""Dynamic-foraging analyses (Wang et al. 2018 Fig. 2; Tsutsui et al. 2016; Lau & Glimcher 2005).

- Matching law: per episode, the fraction of choices to arm L against the fraction of rewards
  earned from L; the generalized matching law log(C_L/C_R) = s log(R_L/R_R) + log b is fit over
  episodes (s = 1 is strict matching, s < 1 undermatching).
- Lagged logistic regression of choice (Lau & Glimcher 2005): logit P(L at t) = b0 +
  sum_k br_k R_{t-k} + sum_k bc_k C_{t-k}, with R = +1 rewarded on L, -1 rewarded on R, 0 not
  rewarded, and C = +1 chose L, -1 chose R; k = 1..LAGS within the episode. Reward kernels that
  decay with lag are the signature of reward integration over recent history.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.figures import new_figure, save_figure

LAGS = 5


def matching(trials: dict[str, np.ndarray]) -> dict:
    episodes = np.unique(trials["episode"])
    choice_l = np.zeros(len(episodes))
    reward_l = np.zeros(len(episodes))
    choices = np.zeros(len(episodes))
    rewards = np.zeros(len(episodes))
    index = np.searchsorted(episodes, trials["episode"])
    left = trials["action"] == 0
    np.add.at(choice_l, index, left)
    np.add.at(choices, index, 1)
    np.add.at(reward_l, index, trials["reward"] * left)
    np.add.at(rewards, index, trials["reward"])
    choice_fraction = choice_l / choices
    income_fraction = np.divide(reward_l, rewards, out=np.full_like(rewards, np.nan), where=rewards > 0)
    choice_r, reward_r = choices - choice_l, rewards - reward_l
    usable = (choice_l > 0) & (choice_r > 0) & (reward_l > 0) & (reward_r > 0)
    slope = intercept = float("nan")
    if usable.sum() >= 3:
        slope, intercept = np.polyfit(np.log(reward_l[usable] / reward_r[usable]),
                                      np.log(choice_l[usable] / choice_r[usable]), 1)
    return {"choice_fraction": choice_fraction, "income_fraction": income_fraction,
            "slope": float(slope), "log_bias": float(intercept), "episodes_fit": int(usable.sum())}


def lagged_regression(trials: dict[str, np.ndarray], lags: int = LAGS) -> dict:
    import statsmodels.api as sm

    choice = np.where(trials["action"] == 0, 1.0, -1.0)
    reward = choice * trials["reward"]
    episode = trials["episode"]
    # trial t enters when its `lags` predecessors are in the same episode
    valid = np.ones(len(choice), dtype=bool)
    for k in range(1, lags + 1):
        same = np.r_[np.zeros(k, dtype=bool), episode[k:] == episode[:-k]]
        valid &= same
    t = np.flatnonzero(valid)
    rows_r = np.column_stack([reward[t - k] for k in range(1, lags + 1)])
    rows_c = np.column_stack([choice[t - k] for k in range(1, lags + 1)])
    target = (choice[t] > 0).astype(int)
    design = np.column_stack([np.ones(len(t)), rows_r, rows_c])
    try:
        fit = sm.Logit(target, design).fit(disp=0)
        coefs, pvalues = fit.params, fit.pvalues
    except Exception:  # separation: a policy too deterministic to fit
        coefs = pvalues = np.full(design.shape[1], np.nan)
    return {
        "reward_kernel": [float(v) for v in coefs[1 : lags + 1]],
        "reward_kernel_p": [float(v) for v in pvalues[1 : lags + 1]],
        "choice_kernel": [float(v) for v in coefs[lags + 1 :]],
        "choice_kernel_p": [float(v) for v in pvalues[lags + 1 :]],
        "intercept": float(coefs[0]),
        "n_trials": int(len(t)),
    }


UNIT_REGRESSORS = ("last_action", "last_reward", "action_x_reward", "value")
UNIT_SESSION_EPISODES = 10


def unit_coding(trials: dict[str, np.ndarray], alpha: float = 0.05) -> dict[str, float]:
    import statsmodels.api as sm

    if "hidden" not in trials:
        return {}
    episode = trials["episode"]
    session = np.isin(episode, np.unique(episode)[:UNIT_SESSION_EPISODES])
    t = np.flatnonzero(np.r_[False, episode[1:] == episode[:-1]] & session)  # trials with a predecessor
    last_action = np.where(trials["action"][t - 1] == 0, 1.0, -1.0)
    last_reward = trials["reward"][t - 1].astype(float)
    design = sm.add_constant(np.column_stack([last_action, last_reward, last_action * last_reward,
                                              trials["value"][t]]))
    significant = np.zeros(len(UNIT_REGRESSORS))
    hidden = trials["hidden"][t]
    for unit in range(hidden.shape[1]):
        if np.ptp(hidden[:, unit]) < 1e-8:  # a silent unit codes nothing
            continue
        significant += sm.OLS(hidden[:, unit], design).fit().pvalues[1:] < alpha
    return {name: float(count / hidden.shape[1]) for name, count in zip(UNIT_REGRESSORS, significant)}


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    match = matching(trials)
    regression = lagged_regression(trials)
    units = unit_coding(trials)

    fig, (ax_match, ax_kernel, ax_units) = new_figure(3)
    ax_match.scatter(match["income_fraction"], match["choice_fraction"], s=8, alpha=0.5)
    ax_match.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax_match.set_xlabel("fraction of rewards from L")
    ax_match.set_ylabel("fraction of choices of L")
    ax_match.set_title(f"Matching (slope {match['slope']:.2f})")
    lags = np.arange(1, LAGS + 1)
    ax_kernel.plot(lags, regression["reward_kernel"], "o-", label="reward")
    ax_kernel.plot(lags, regression["choice_kernel"], "s-", label="choice")
    ax_kernel.axhline(0, color="k", lw=0.8)
    ax_kernel.set_xlabel("trials back")
    ax_kernel.set_ylabel("regression coefficient")
    ax_kernel.set_title("Lagged logistic regression of choice")
    ax_kernel.legend()
    ax_units.bar(range(len(UNIT_REGRESSORS)), [units.get(n, np.nan) for n in UNIT_REGRESSORS], color="0.5")
    ax_units.set_xticks(range(len(UNIT_REGRESSORS)), ["last\naction", "last\nreward", "action x\nreward", "value"])
    ax_units.set_ylim(0, 1)
    ax_units.set_ylabel("fraction of units (p < 0.05)")
    ax_units.set_title("Single-unit coding")
    figure = save_figure(fig, Path(out_dir) / "foraging_matching.png")

    kernel = regression["reward_kernel"]
    return {
        "matching_slope": match["slope"],
        "matching_log_bias": match["log_bias"],
        "matching_episodes_fit": match["episodes_fit"],
        "lagged_regression": regression,
        "unit_coding_fraction": units,
        "reward_kernel_decays": bool(all(a > b for a, b in zip(kernel, kernel[1:])) and kernel[0] > 0),
        "figures": [figure],
    }
