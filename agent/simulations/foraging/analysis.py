"""Dynamic-foraging analyses (Wang et al. 2018 Fig. 2; Tsutsui et al. 2016; Lau & Glimcher 2005).

- Matching law, per block (Lau & Glimcher's unit; per episode when trials carry no `block`):
  the generalized matching law log(C_L/C_R) = s log(R_L/R_R) + log b is fit by least squares
  over blocks with choices and rewards on both arms; s < 1 is undermatching.
- Lagged logistic regression of choice (Lau & Glimcher 2005): logit P(L at t) = b_episode +
  sum_k br_k R_{t-k} + sum_k bc_k C_{t-k}, k = 1..LAGS within the episode, with R = +1 rewarded
  on L, -1 rewarded on R, 0 not rewarded, and C = +1 chose L, -1 chose R. The bias b_episode is
  one per episode (a session, for Lau & Glimcher), so a side preference that differs between
  episodes is not read as history. Episodes whose fitted trials are all one choice carry no
  information on the kernels (their bias runs to infinity) and are dropped and counted.
  Intervals: 95% Wald intervals from the inverse Hessian of the likelihood. A reward kernel
  that decays from lag 1 is the signature of a learner that weighs recent rewards most.
- Stay rates: the share of trials (after an episode's first) that repeat the previous choice,
  overall and after a rewarded (win-stay) and an unrewarded (lose-stay) trial. Without a
  changeover delay an agent may alternate to collect bait (stay rate well under 1/2).
- Single units (Tsutsui et al. 2016): each LSTM unit's activity at the start of trial t is
  regressed (OLS) on the last action, the last reward, their product and the value of the
  action chosen at t; the fraction of units with p < 0.05 for each is reported. The value is
  the chosen action's (the paper's), not the critic's state value: a Q-learning model is fit to
  the agent's choices by maximum likelihood, with one value per arm, Q starting at
  INITIAL_VALUE each episode, Q_{t+1}[a_t] = Q_t[a_t] + alpha (r_t - Q_t[a_t]) (the unchosen arm
  unchanged) and P(a_t) = softmax(beta Q_t); the regressor is Q_t[a_t].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from statsmodels.tools.numdiff import approx_hess3

from agent.simulations.figures import new_figure, save_figure

LAGS = 15
Z95 = 1.959964
INITIAL_VALUE = 0.25  # half the base-rate sum: an arm's average base rate
UNIT_REGRESSORS = ("last_action", "last_reward", "action_x_reward", "chosen_value")
UNIT_SESSION_EPISODES = 10  # the episodes one "recording session" of units is regressed on


def _group_index(*keys: np.ndarray) -> np.ndarray:
    """Dense 0-based index of each row's group (the distinct combinations of keys)."""
    return np.unique(np.column_stack(keys), axis=0, return_inverse=True)[1].ravel()


def matching(trials: dict[str, np.ndarray]) -> dict:
    import statsmodels.api as sm

    keys = (trials["episode"], trials["block"]) if "block" in trials else (trials["episode"],)
    group = _group_index(*keys)
    left = trials["action"] == 0

    def per_group(values):
        return np.bincount(group, weights=values.astype(float))

    choice_l, choices = per_group(left), per_group(np.ones_like(left))
    reward_l, rewards = per_group(trials["reward"] * left), per_group(trials["reward"])
    choice_r, reward_r = choices - choice_l, rewards - reward_l
    usable = (choice_l > 0) & (choice_r > 0) & (reward_l > 0) & (reward_r > 0)
    slope = intercept = float("nan")
    slope_ci = [float("nan")] * 2
    if usable.sum() >= 3:
        fit = sm.OLS(np.log(choice_l[usable] / choice_r[usable]),
                     sm.add_constant(np.log(reward_l[usable] / reward_r[usable]))).fit()
        intercept, slope = fit.params
        slope_ci = [float(v) for v in fit.conf_int(0.05)[1]]
    income_fraction = np.divide(reward_l, rewards, out=np.full_like(rewards, np.nan), where=rewards > 0)
    return {"choice_fraction": choice_l / choices, "income_fraction": income_fraction, "slope": float(slope),
            "slope_ci95": slope_ci, "log_bias": float(intercept), "units_fit": int(usable.sum()),
            "unit": "block" if "block" in trials else "episode"}


def fixed_effects_logit(target: np.ndarray, design: np.ndarray, groups: np.ndarray,
                        max_iter: int = 100, tol: float = 1e-9) -> dict:
    """Maximum-likelihood logistic regression with one intercept per group.

    Newton's method on (coefficients, intercepts) with the intercepts' block of the Hessian
    kept diagonal: the Schur complement gives the coefficients' step and their covariance,
    so a thousand episode intercepts cost no more than a handful (statsmodels' Logit would
    need a dense design with a column per episode: 85k x 1000 for 1000 test episodes).
    Groups whose targets do not vary must be removed by the caller. Returns coef, cov
    (coefficients only) and the intercepts."""
    n_groups = int(groups.max()) + 1
    coef, bias = np.zeros(design.shape[1]), np.zeros(n_groups)

    def log_likelihood(c, b):
        eta = design @ c + b[groups]
        return float(np.sum(target * eta - np.logaddexp(0.0, eta)))

    def newton_parts(c, b):
        p = expit(design @ c + b[groups])
        w, residual = p * (1 - p), target - p
        by_group_w = np.bincount(groups, weights=w, minlength=n_groups)
        cross = np.column_stack([np.bincount(groups, weights=w * column, minlength=n_groups)
                                 for column in design.T])  # (groups, coefficients)
        schur = (design * w[:, None]).T @ design - cross.T @ (cross / by_group_w[:, None])
        return residual, by_group_w, cross, schur

    current = log_likelihood(coef, bias)
    converged = False
    for _ in range(max_iter):
        residual, by_group_w, cross, schur = newton_parts(coef, bias)
        grad_bias = np.bincount(groups, weights=residual, minlength=n_groups)
        step_coef = np.linalg.solve(schur, design.T @ residual - cross.T @ (grad_bias / by_group_w))
        step_bias = (grad_bias - cross @ step_coef) / by_group_w
        scale = 1.0
        while scale > 1e-6:  # halve a step that overshoots (far from the optimum)
            candidate = log_likelihood(coef + scale * step_coef, bias + scale * step_bias)
            if candidate >= current - 1e-12:
                break
            scale /= 2
        coef, bias = coef + scale * step_coef, bias + scale * step_bias
        gain, current = candidate - current, candidate
        if max(np.abs(scale * step_coef).max(), np.abs(scale * step_bias).max()) < tol or abs(gain) < tol:
            converged = True
            break
    schur = newton_parts(coef, bias)[3]
    return {"coef": coef, "cov": np.linalg.inv(schur), "bias": bias, "log_likelihood": current,
            "converged": converged}


def lagged_design(trials: dict[str, np.ndarray], lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target chose L, design [R_{t-1..t-lags}, C_{t-1..t-lags}], episode) for each trial t
    whose `lags` predecessors are in its episode."""
    choice = np.where(trials["action"] == 0, 1.0, -1.0)
    reward = choice * trials["reward"]
    episode = trials["episode"]
    valid = np.ones(len(choice), dtype=bool)
    for k in range(1, lags + 1):
        valid &= np.r_[np.zeros(k, dtype=bool), episode[k:] == episode[:-k]]
    t = np.flatnonzero(valid)
    design = np.column_stack([reward[t - k] for k in range(1, lags + 1)] + [choice[t - k] for k in range(1, lags + 1)])
    return (choice[t] > 0).astype(float), design, episode[t]


def lagged_regression(trials: dict[str, np.ndarray], lags: int = LAGS) -> dict:
    target, design, episode = lagged_design(trials, lags)
    group = np.unique(episode, return_inverse=True)[1]
    share_left = np.bincount(group, weights=target) / np.bincount(group)
    varies = (share_left > 0) & (share_left < 1)
    keep = varies[group]
    fit = fixed_effects_logit(target[keep], design[keep], np.unique(group[keep], return_inverse=True)[1])
    half = Z95 * np.sqrt(np.diag(fit["cov"]))
    ci = np.column_stack([fit["coef"] - half, fit["coef"] + half]).tolist()
    return {
        "lags": lags,
        "reward_kernel": fit["coef"][:lags].tolist(), "reward_kernel_ci95": ci[:lags],
        "choice_kernel": fit["coef"][lags:].tolist(), "choice_kernel_ci95": ci[lags:],
        "n_trials": int(keep.sum()), "episodes_fit": int(varies.sum()),
        "episodes_dropped": int((~varies).sum()), "converged": fit["converged"],
    }


def kernel_decays(regression: dict) -> bool:
    """Lag 1 > lag 3 > lag 5 with disjoint 95% intervals, and lag 1 > 0 (likewise)."""
    ci = regression["reward_kernel_ci95"]
    return bool(ci[0][0] > 0 and ci[0][0] > ci[2][1] and ci[2][0] > ci[4][1])


def stay_rates(trials: dict[str, np.ndarray]) -> dict[str, float]:
    """P(a_t = a_{t-1}) over trials with a predecessor in the episode; also after a win, a loss."""
    same_episode = trials["episode"][1:] == trials["episode"][:-1]
    stay = (trials["action"][1:] == trials["action"][:-1])[same_episode]
    won = (trials["reward"][:-1] > 0)[same_episode]
    share = lambda x: float(x.mean()) if len(x) else float("nan")  # noqa: E731
    return {"stay": share(stay), "win_stay": share(stay[won]), "lose_stay": share(stay[~won])}


def _padded(trials: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], tuple]:
    """(episodes, max trials) arrays of the named columns, and each trial's (row, column) in them."""
    row, col = np.unique(trials["episode"], return_inverse=True)[1].ravel(), trials["trial"].astype(int)
    shape = (row.max() + 1, col.max() + 1)
    arrays = {}
    for name in names:
        arrays[name] = np.zeros(shape, dtype=trials[name].dtype)
        arrays[name][row, col] = trials[name]
    return arrays, (row, col)


def q_learning_values(action: np.ndarray, reward: np.ndarray, alpha: float) -> np.ndarray:
    """(episodes, trials, 2) values Q_t before each trial's choice, for padded arrays."""
    values = np.empty(action.shape + (2,))
    q = np.full((action.shape[0], 2), INITIAL_VALUE)
    rows = np.arange(action.shape[0])
    for t in range(action.shape[1]):
        values[:, t] = q
        chosen = q[rows, action[:, t]]
        q[rows, action[:, t]] = chosen + alpha * (reward[:, t] - chosen)
    return values


def _q_negative_log_likelihood(params: np.ndarray, action, reward, where) -> float:
    alpha, beta = expit(params[0]), np.exp(params[1])
    values = q_learning_values(action, reward, alpha)
    logits = beta * values
    log_probs = logits - np.logaddexp(logits[..., 0], logits[..., 1])[..., None]
    chosen = np.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]
    return float(-chosen[where].sum())


def fit_q_learning(trials: dict[str, np.ndarray]) -> dict:
    """ML alpha and beta with 95% Wald intervals, and Q_t[a_t] per trial (`chosen_value`)."""
    arrays, where = _padded(trials, ("action", "reward"))
    action, reward = arrays["action"].astype(int), arrays["reward"].astype(float)
    args = (action, reward, where)
    result = minimize(_q_negative_log_likelihood, np.array([logit(0.3), np.log(3.0)]), args=args,
                      method="L-BFGS-B", bounds=[(-8, 8), (-5, 5)])
    covariance = np.linalg.pinv(approx_hess3(result.x, _q_negative_log_likelihood, args=args))
    half = Z95 * np.sqrt(np.clip(np.diag(covariance), 0, None))
    values = q_learning_values(action, reward, expit(result.x[0]))
    chosen = np.take_along_axis(values, action[..., None], axis=-1)[..., 0]
    return {"alpha": float(expit(result.x[0])),
            "alpha_ci95": [float(expit(result.x[0] - half[0])), float(expit(result.x[0] + half[0]))],
            "beta": float(np.exp(result.x[1])),
            "beta_ci95": [float(np.exp(result.x[1] - half[1])), float(np.exp(result.x[1] + half[1]))],
            "negative_log_likelihood": float(result.fun), "converged": bool(result.success),
            "chosen_value": chosen[where]}


def unit_coding(trials: dict[str, np.ndarray], chosen_value: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Fraction of units with p < alpha for each UNIT_REGRESSORS entry, over the session's trials."""
    import statsmodels.api as sm

    if "hidden" not in trials:
        return {}
    episode = trials["episode"]
    session = np.isin(episode, np.unique(episode)[:UNIT_SESSION_EPISODES])
    t = np.flatnonzero(np.r_[False, episode[1:] == episode[:-1]] & session)  # trials with a predecessor
    last_action = np.where(trials["action"][t - 1] == 0, 1.0, -1.0)
    last_reward = trials["reward"][t - 1].astype(float)
    design = sm.add_constant(np.column_stack([last_action, last_reward, last_action * last_reward,
                                              chosen_value[t]]))
    significant = np.zeros(len(UNIT_REGRESSORS))
    hidden = trials["hidden"][t]
    for unit in range(hidden.shape[1]):
        if np.ptp(hidden[:, unit]) < 1e-8:  # a silent unit codes nothing
            continue
        significant += sm.OLS(hidden[:, unit], design).fit().pvalues[1:] < alpha
    return {name: float(count / hidden.shape[1]) for name, count in zip(UNIT_REGRESSORS, significant)}


def plot_foraging(match: dict, regression: dict, units: dict, path: Path) -> str:
    fig, (ax_match, ax_kernel, ax_units) = new_figure(3)
    ax_match.scatter(match["income_fraction"], match["choice_fraction"], s=6, alpha=0.3)
    ax_match.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax_match.set_xlabel("fraction of rewards from L")
    ax_match.set_ylabel("fraction of choices of L")
    ax_match.set_title(f"Matching per {match['unit']} (slope {match['slope']:.2f})", fontsize=9)
    lags = np.arange(1, regression["lags"] + 1)
    for name, marker, color in (("reward", "o", "tab:blue"), ("choice", "s", "tab:orange")):
        ci = np.array(regression[f"{name}_kernel_ci95"])
        ax_kernel.plot(lags, regression[f"{name}_kernel"], marker + "-", ms=3, color=color, label=name)
        ax_kernel.fill_between(lags, ci[:, 0], ci[:, 1], color=color, alpha=0.25, lw=0)
    ax_kernel.axhline(0, color="k", lw=0.8)
    ax_kernel.set_xlabel("trials back")
    ax_kernel.set_ylabel("coefficient (95% CI)")
    ax_kernel.set_title("Lagged logistic regression of choice", fontsize=9)
    ax_kernel.legend(fontsize=8)
    ax_units.bar(range(len(UNIT_REGRESSORS)), [units.get(n, np.nan) for n in UNIT_REGRESSORS], color="0.5")
    ax_units.set_xticks(range(len(UNIT_REGRESSORS)), ["last\naction", "last\nreward", "action x\nreward",
                                                      "chosen\nvalue"])
    ax_units.set_ylim(0, 1)
    ax_units.set_ylabel("fraction of units (p < 0.05)")
    ax_units.set_title("Single-unit coding", fontsize=9)
    return save_figure(fig, path)


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    match = matching(trials)
    regression = lagged_regression(trials)
    q_fit = fit_q_learning(trials)
    units = unit_coding(trials, q_fit.pop("chosen_value"))
    figure = plot_foraging(match, regression, units, Path(out_dir) / "foraging_matching.png")
    return {
        "matching_slope": match["slope"],
        "matching_slope_ci95": match["slope_ci95"],
        "matching_log_bias": match["log_bias"],
        "matching_units_fit": match["units_fit"],
        "matching_unit": match["unit"],
        "undermatching": bool(match["slope_ci95"][1] < 1),
        "lagged_regression": regression,
        "reward_kernel_decays": kernel_decays(regression),
        "stay_rates": stay_rates(trials),
        "q_learning_fit": q_fit,
        "unit_coding_fraction": units,
        "figures": [figure],
    }


def summary_lines(metrics: dict) -> list[str]:
    regression = metrics["lagged_regression"]
    lags = ", ".join(f"lag {k + 1} {regression['reward_kernel'][k]:.2f} [{regression['reward_kernel_ci95'][k][0]:.2f}, "
                     f"{regression['reward_kernel_ci95'][k][1]:.2f}]" for k in (0, 2, 4))
    low, high = metrics["matching_slope_ci95"]
    units = metrics["unit_coding_fraction"]
    lines = [f"reward kernel {lags}; decays: {'yes' if metrics['reward_kernel_decays'] else 'no'} "
             f"({regression['episodes_dropped']} episodes without both choices dropped)",
             f"matching slope per {metrics['matching_unit']} [{low:.2f}, {high:.2f}]; undermatching: "
             f"{'yes' if metrics['undermatching'] else 'no'}"]
    stays = metrics.get("stay_rates")
    if stays:
        lines.append(f"stay rate {stays['stay']:.2f} (after a reward {stays['win_stay']:.2f}, "
                     f"after none {stays['lose_stay']:.2f})")
    if units:
        lines.append("units coding (p < 0.05): " + ", ".join(f"{name} {value:.0%}" for name, value in units.items()))
    return lines
