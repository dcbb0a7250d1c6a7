"""Volatility analyses (Behrens et al. 2007; Wang et al. 2018 Fig. 3).

A Rescorla-Wagner learner is fitted to the frozen agent's choices by maximum likelihood: one
learner runs through each whole episode (values carry across the phase boundary), with one
learning rate per phase and one inverse temperature shared by both:
    P(a_t) = softmax(beta * Q_t),  Q_{t+1}[a_t] = Q_t[a_t] + alpha_{phase_t} * (r_t - Q_t[a_t]),
Q starting at 0.5. An agent that learns faster when the world changes faster has
alpha(volatile) > alpha(stable). Intervals: 95% Wald intervals from the Hessian of the
likelihood in the fitted (logit alpha, log beta) coordinates, mapped back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from statsmodels.tools.numdiff import approx_hess3

from agent.figures import new_figure, save_figure

PHASES = ("stable", "volatile")
INITIAL_VALUE = 0.5
EXAMPLE_WINDOW = 9  # trials in the moving average of the example episode's choices


def episode_arrays(trials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(episodes, trials) arrays of action, reward, phase, p_0; episodes of equal length."""
    episodes = np.unique(trials["episode"])
    shape = (len(episodes), len(trials["episode"]) // len(episodes))
    return {name: trials[name].reshape(shape) for name in ("action", "reward", "phase", "p_0")}


def negative_log_likelihood(params: np.ndarray, data: dict[str, np.ndarray]) -> float:
    alphas, beta = expit(params[:2]), np.exp(params[2])
    action, reward, phase = data["action"].astype(int), data["reward"], data["phase"].astype(int)
    episodes = np.arange(action.shape[0])
    values = np.full((action.shape[0], 2), INITIAL_VALUE)
    total = 0.0
    for t in range(action.shape[1]):
        logits = beta * values
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= log_probs[episodes, action[:, t]].sum()
        chosen = values[episodes, action[:, t]]
        values[episodes, action[:, t]] = chosen + alphas[phase[:, t]] * (reward[:, t] - chosen)
    return float(total)


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
    fitted["negative_log_likelihood"] = float(result.fun)
    fitted["converged"] = bool(result.success)
    return fitted


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
    return {"rescorla_wagner_fit": fit, "better_arm_rate": better_arm_rate(trials), "figures": [figure]}


def summary_lines(metrics: dict) -> list[str]:
    fit = metrics["rescorla_wagner_fit"]
    parts = [f"{phase} {fit['alpha_' + phase]['value']:.3f} [{fit['alpha_' + phase]['ci95'][0]:.3f}, "
             f"{fit['alpha_' + phase]['ci95'][1]:.3f}]" for phase in PHASES]
    rates = metrics["better_arm_rate"]
    return ["fitted learning rate: " + ", ".join(parts) + f"; beta {fit['beta']['value']:.2f}",
            "better arm chosen: " + ", ".join(f"{phase} {rates[phase]:.1%}" for phase in PHASES)]
