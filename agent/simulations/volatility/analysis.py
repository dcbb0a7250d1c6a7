"""Volatility analyses (Behrens et al. 2007; Wang et al. 2018 Fig. 3).

A Rescorla-Wagner learner is fitted to the frozen agent's choices by maximum likelihood: one
learner runs through each whole episode (values carry across the phase boundary), with one
learning rate per phase and one inverse temperature shared by both:
    P(a_t) = softmax(beta * Q_t),  Q_{t+1}[a_t] = Q_t[a_t] + alpha_{phase_t} * (r_t - Q_t[a_t]),
Q starting at 0.5. An agent that learns faster when the world changes faster has
alpha(volatile) > alpha(stable). Intervals: 95% Wald intervals from the Hessian of the
likelihood in the fitted (logit alpha, log beta) coordinates, mapped back.

The adaptation itself, alpha(volatile) - alpha(stable), gets an interval with the test episode
as the unit (`alpha_difference`): the sandwich (cluster-robust) covariance H^-1 (sum_e s_e s_e')
H^-1 of the fitted parameters, s_e each episode's score, and the delta method; it is the
large-sample equivalent of a bootstrap over episodes (one refit per resample would cost ~2 s
each). `paired_alpha_difference` compares two learners played on the same test episodes (the
agent and the fixed-hazard Bayesian control): the difference of their differences, with both
fits' episode scores stacked so the interval is paired over episodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from statsmodels.tools.numdiff import approx_hess3

from agent.simulations.figures import new_figure, save_figure

PHASES = ("stable", "volatile")
INITIAL_VALUE = 0.5
EXAMPLE_WINDOW = 9  # trials in the moving average of the example episode's choices


def episode_arrays(trials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(episodes, trials) arrays of action, reward, phase, p_0; episodes of equal length."""
    episodes = np.unique(trials["episode"])
    shape = (len(episodes), len(trials["episode"]) // len(episodes))
    return {name: trials[name].reshape(shape) for name in ("action", "reward", "phase", "p_0")}


def negative_log_likelihood(params: np.ndarray, data: dict[str, np.ndarray]) -> float:
    return float(episode_negative_log_likelihoods(params, data).sum())


def episode_negative_log_likelihoods(params: np.ndarray, data: dict[str, np.ndarray]) -> np.ndarray:
    """(episodes,) negative log-likelihood of each episode's choices."""
    alphas, beta = expit(params[:2]), np.exp(params[2])
    action, reward, phase = data["action"].astype(int), data["reward"], data["phase"].astype(int)
    episodes = np.arange(action.shape[0])
    values = np.full((action.shape[0], 2), INITIAL_VALUE)
    total = np.zeros(action.shape[0])
    for t in range(action.shape[1]):
        logits = beta * values
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= log_probs[episodes, action[:, t]]
        chosen = values[episodes, action[:, t]]
        values[episodes, action[:, t]] = chosen + alphas[phase[:, t]] * (reward[:, t] - chosen)
    return total


def fit_rescorla_wagner(trials: dict[str, np.ndarray]) -> dict:
    """Maximum-likelihood alpha per phase and shared beta, each with a 95% interval."""
    data = episode_arrays(trials)
    start = np.array([logit(0.2), logit(0.2), np.log(3.0)])
    result = minimize(negative_log_likelihood, start, args=(data,), method="L-BFGS-B",
                      bounds=[(-8, 8), (-8, 8), (-5, 5)])
    covariance = np.linalg.pinv(approx_hess3(result.x, negative_log_likelihood, args=(data,)))
    half = 1.96 * np.sqrt(np.clip(np.diag(covariance), 0, None))
    low, high = result.x - half, result.x + half
    fitted = {f"alpha_{phase}": {"value": float(expit(result.x[i])),
                                 "ci95": [float(expit(low[i])), float(expit(high[i]))]}
              for i, phase in enumerate(PHASES)}
    fitted["beta"] = {"value": float(np.exp(result.x[2])), "ci95": [float(np.exp(low[2])), float(np.exp(high[2]))]}
    fitted["params"] = [float(v) for v in result.x]  # (logit alpha stable, logit alpha volatile, log beta)
    fitted["negative_log_likelihood"] = float(result.fun)
    fitted["converged"] = bool(result.success)
    return fitted


SCORE_STEP = 1e-5


def _episode_scores(params: np.ndarray, data: dict[str, np.ndarray]) -> np.ndarray:
    """(episodes, 3) gradient of each episode's negative log-likelihood (central differences)."""
    columns = []
    for i in range(len(params)):
        step = np.zeros(len(params))
        step[i] = SCORE_STEP
        columns.append((episode_negative_log_likelihoods(params + step, data)
                        - episode_negative_log_likelihoods(params - step, data)) / (2 * SCORE_STEP))
    return np.column_stack(columns)


def _fit_parts(trials: dict[str, np.ndarray], fit: dict | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fitted params, inverse Hessian, per-episode scores) of one learner's fit."""
    data = episode_arrays(trials)
    fit = fit or fit_rescorla_wagner(trials)
    params = np.array(fit["params"])
    inverse_hessian = np.linalg.pinv(approx_hess3(params, negative_log_likelihood, args=(data,)))
    return params, inverse_hessian, _episode_scores(params, data)


def _difference_gradient(params: np.ndarray) -> np.ndarray:
    """d(alpha_volatile - alpha_stable) / d(params)."""
    stable, volatile = expit(params[0]), expit(params[1])
    return np.array([-stable * (1 - stable), volatile * (1 - volatile), 0.0])


def alpha_difference(trials: dict[str, np.ndarray], fit: dict | None = None) -> dict:
    """alpha_volatile - alpha_stable with its 95% interval, episodes as the unit (module docstring)."""
    params, inverse_hessian, scores = _fit_parts(trials, fit)
    covariance = inverse_hessian @ (scores.T @ scores) @ inverse_hessian
    gradient = _difference_gradient(params)
    value = float(expit(params[1]) - expit(params[0]))
    half = 1.96 * float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))
    return {"value": value, "ci95": [value - half, value + half], "episodes": int(scores.shape[0])}


def paired_alpha_difference(trials: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                            fit: dict | None = None, reference_fit: dict | None = None) -> dict:
    """[alpha_v - alpha_s](trials) - [alpha_v - alpha_s](reference), both played on the same test
    episodes, with a 95% interval paired over episodes (stacked sandwich; module docstring)."""
    if not np.array_equal(np.unique(trials["episode"]), np.unique(reference["episode"])):
        raise ValueError("paired_alpha_difference: the two tables hold different test episodes")
    params, inverse_hessian, scores = _fit_parts(trials, fit)
    ref_params, ref_inverse_hessian, ref_scores = _fit_parts(reference, reference_fit)
    influence = np.column_stack([scores @ inverse_hessian, ref_scores @ ref_inverse_hessian])  # (E, 6)
    gradient = np.concatenate([_difference_gradient(params), -_difference_gradient(ref_params)])
    value = float((expit(params[1]) - expit(params[0])) - (expit(ref_params[1]) - expit(ref_params[0])))
    half = 1.96 * float(np.sqrt(max(gradient @ (influence.T @ influence) @ gradient, 0.0)))
    return {"value": value, "ci95": [value - half, value + half], "episodes": int(scores.shape[0])}


def better_arm_rate(trials: dict[str, np.ndarray]) -> dict[str, float]:
    """Fraction of trials on which the agent chose the arm paying more, per phase."""
    better = np.where(trials["p_0"] > 0.5, 0, 1)
    chose_better = trials["action"] == better
    return {phase: float(chose_better[trials["phase"] == code].mean()) for code, phase in enumerate(PHASES)}


def plot_volatility(trials: dict[str, np.ndarray], fit: dict, path: Path) -> str:
    fig, (rates, example) = new_figure(2, width_per_column=4.5, height=3.4)
    for i, phase in enumerate(PHASES):
        entry = fit[f"alpha_{phase}"]
        low, high = entry["ci95"]
        rates.errorbar([i], [entry["value"]], yerr=[[entry["value"] - low], [high - entry["value"]]], fmt="o",
                       capsize=4, color=("tab:blue", "tab:red")[i])
    rates.set_xticks([0, 1], PHASES)
    rates.set_xlim(-0.6, 1.6)
    rates.set_ylabel("fitted learning rate alpha (95% CI)")
    rates.set_title("Rescorla-Wagner fit to the agent's choices", fontsize=9)
    data = episode_arrays(trials)
    kernel = np.ones(EXAMPLE_WINDOW) / EXAMPLE_WINDOW
    choice_0 = np.convolve((data["action"][0] == 0).astype(float), kernel, mode="same")
    t = np.arange(1, data["action"].shape[1] + 1)
    example.plot(t, data["p_0"][0], color="k", lw=1.5, label="P(reward | arm 0)")
    example.plot(t, choice_0, color="tab:orange", lw=1.2, label=f"chose arm 0 ({EXAMPLE_WINDOW}-trial mean)")
    volatile = data["phase"][0] == 1
    example.fill_between(t, 0, 1, where=volatile, color="tab:red", alpha=0.08, lw=0, label="volatile phase")
    example.set_ylim(-0.02, 1.02)
    example.set_xlabel("trial")
    example.set_title("test episode 0", fontsize=9)
    example.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    fit = fit_rescorla_wagner(trials)
    figure = plot_volatility(trials, fit, Path(out_dir) / "volatility.png")
    return {"rescorla_wagner_fit": fit, "alpha_difference": alpha_difference(trials, fit),
            "better_arm_rate": better_arm_rate(trials), "figures": [figure]}


def summary_lines(metrics: dict) -> list[str]:
    fit = metrics["rescorla_wagner_fit"]
    parts = [f"{phase} {fit['alpha_' + phase]['value']:.3f} [{fit['alpha_' + phase]['ci95'][0]:.3f}, "
             f"{fit['alpha_' + phase]['ci95'][1]:.3f}]" for phase in PHASES]
    rates = metrics["better_arm_rate"]
    return ["fitted learning rate: " + ", ".join(parts) + f"; beta {fit['beta']['value']:.2f}",
            "better arm chosen: " + ", ".join(f"{phase} {rates[phase]:.1%}" for phase in PHASES)]
