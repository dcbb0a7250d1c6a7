"""Two-step analyses (Wang et al. 2018 Fig. 5; Daw et al. 2011).

- Stay probability: P(repeat the first-stage action on trial t+1) given trial t's reward and
  transition (common/rare), four bars as in Fig. 5b.
- Logistic regression of stay on reward, transition and reward x transition (each coded +1/-1:
  rewarded/unrewarded, common/rare). Model-free behaviour shows only a reward effect; the
  model-based signature is a positive interaction.
- The same regression with a fourth predictor, `correct` (+1 where trial t's first-stage action
  commonly leads to the state that is good on trial t, else -1; Akam, Costa & Dayan 2015). On
  this task (0.9/0.1 rewards, rare swaps) a learner that knows which action is better takes a
  rare transition to reward mostly after choosing the worse action, so a purely model-free
  learner (SARSA(lambda), `agent baseline --strategy model_free`) shows a positive reward x
  transition interaction in the plain regression (coef ~0.5, p < 1e-90 on 300 episodes) and
  meets the stay-pattern ordering too; with `correct` in the model its interaction is ~0
  while a model-based planner's stays (~0.6).
- Inference with the test episode as the unit: the corrected regression's coefficients also get
  cluster-robust (by episode) standard errors (`stay_regression_with_correct_clustered`): an
  episode's 100 trials are not independent draws, so the pooled-trial p-values overstate the
  evidence.
- Daw et al.'s (2011) hybrid learner fitted to the first-stage choices by maximum likelihood
  (`hybrid_fit`): SARSA(lambda) values Q_MF and planned values Q_MB = 0.8 V(common state) +
  0.2 V(rare state) mixed as w Q_MB + (1 - w) Q_MF; P(a) = softmax(beta Q_net(a) + p [a =
  previous choice]); V(s) and Q_MF updated with rate alpha, eligibility lambda; values start
  at 0.5 each episode. w near 1 is model-based, near 0 model-free. No interval: the pure
  learners put w at a bound of [0, 1], where Wald and sandwich intervals break down; the
  criterion reads the point estimate (controls: ~0.000 model-free, ~1.000 model-based).
- RPE at the onset of the second stage, delta = gamma * V(stage 2) - V(stage 1) (the stage-1
  step pays nothing), by transition type: model-based values make rare transitions surprising.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from agent.simulations.figures import new_figure, p_value_label, save_figure

CONDITIONS = (("common_rewarded", 1, 1), ("rare_rewarded", 1, 0),
              ("common_unrewarded", 0, 1), ("rare_unrewarded", 0, 0))


def consecutive_pairs(trials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per pair of consecutive trials in the same episode: trial t's reward/common and stay."""
    same_episode = trials["episode"][1:] == trials["episode"][:-1]
    pairs = {
        "reward": trials["reward"][:-1][same_episode].astype(int),
        "common": trials["common"][:-1][same_episode].astype(int),
        "stay": (trials["action"][1:] == trials["action"][:-1])[same_episode].astype(int),
        "episode": trials["episode"][:-1][same_episode],
    }
    if "good_state" in trials:  # action a leads commonly to state a: correct where they match
        pairs["correct"] = (trials["action"] == trials["good_state"])[:-1][same_episode].astype(int)
    return pairs


def stay_probabilities(pairs: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, rewarded, common in CONDITIONS:
        mask = (pairs["reward"] == rewarded) & (pairs["common"] == common)
        out[name] = float(pairs["stay"][mask].mean()) if mask.any() else float("nan")
    return out


def stay_regression(pairs: dict[str, np.ndarray], correct: bool = False,
                    clustered: bool = False) -> dict[str, dict[str, float]]:
    """Logit(stay) ~ 1 + reward + transition + reward:transition, +1/-1 coding; coef and p.
    correct: also the `correct` predictor (+1/-1; module docstring); clustered: p-values from
    standard errors clustered by episode (pairs["episode"])."""
    import statsmodels.api as sm

    reward = 2.0 * pairs["reward"] - 1
    transition = 2.0 * pairs["common"] - 1
    columns = [np.ones_like(reward), reward, transition, reward * transition]
    names = ("intercept", "reward", "transition", "reward_x_transition")
    if correct:
        columns.append(2.0 * pairs["correct"] - 1)
        names += ("correct",)
    design = np.column_stack(columns)
    try:
        model = sm.Logit(pairs["stay"], design)
        fit = (model.fit(disp=0, cov_type="cluster", cov_kwds={"groups": pairs["episode"]}) if clustered
               else model.fit(disp=0))
        coefs, pvalues = fit.params, fit.pvalues
    except Exception:  # perfect separation, e.g. a policy that always stays
        coefs = pvalues = np.full(len(names), np.nan)
    return {name: {"coef": float(coefs[i]), "p": float(pvalues[i])} for i, name in enumerate(names)}


HYBRID_PARAMETERS = ("alpha", "beta", "w", "lambda", "perseveration")
HYBRID_INITIAL_VALUE = 0.5
HYBRID_BOUNDS = [(-8, 8), (-5, 4), (-8, 8), (-8, 8), (-5, 5)]  # logit a, log beta, logit w, logit lambda, p


def _hybrid_arrays(trials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(episodes, trials) arrays of action, state reached, reward; episodes of equal length."""
    episodes = len(np.unique(trials["episode"]))
    return {name: trials[name].astype(int if name != "reward" else float).reshape(episodes, -1)
            for name in ("action", "state", "reward")}


def hybrid_episode_nll(params: np.ndarray, data: dict[str, np.ndarray]) -> np.ndarray:
    """(episodes,) negative log-likelihood of each episode's first-stage choices under the hybrid;
    params (K, 5) gives (K, episodes), K parameter vectors in one pass over the trials."""
    params = np.asarray(params, dtype=float)
    batched = params.ndim == 2
    p = params if batched else params[None]
    alpha, beta, w, lam = (expit(p[:, 0]), np.exp(p[:, 1]), expit(p[:, 2]), expit(p[:, 3]))
    alpha, beta, w, lam, persev = (x[:, None, None] for x in (alpha, beta, w, lam, p[:, 4]))
    action, state, reward = data["action"], data["state"], data["reward"]
    n, trials = action.shape
    k, rows = len(p), np.arange(n)
    alpha, beta, w, lam, persev = (x[:, :, 0] for x in (alpha, beta, w, lam, persev))  # (k, 1) each
    q_mf = np.full((k, n, 2), HYBRID_INITIAL_VALUE)
    v = np.full((k, n, 2), HYBRID_INITIAL_VALUE)
    previous = np.zeros((k, n, 2))
    total = np.zeros((k, n))
    for t in range(trials):
        q_mb = 0.8 * v + 0.2 * v[..., ::-1]  # action a leads commonly to state a
        logits = beta[..., None] * (w[..., None] * q_mb + (1 - w[..., None]) * q_mf) + persev[..., None] * previous
        logits -= logits.max(axis=2, keepdims=True)
        a, s, r = action[:, t], state[:, t], reward[:, t]
        total -= logits[:, rows, a] - np.log(np.exp(logits).sum(axis=2))
        delta1 = v[:, rows, s] - q_mf[:, rows, a]
        delta2 = r - v[:, rows, s]
        q_mf[:, rows, a] += alpha * (delta1 + lam * delta2)
        v[:, rows, s] += alpha * delta2
        previous = np.zeros((k, n, 2))
        previous[:, rows, a] = 1.0
    return total if batched else total[0]


def _nll_and_forward_difference_gradient(x: np.ndarray, data: dict, bounds: np.ndarray) -> tuple[float, np.ndarray]:
    """The summed NLL and its forward-difference gradient, the point and its 5 steps in one pass
    (steps as scipy's 2-point scheme takes them: sqrt(eps) * max(1, |x|), backward at an upper
    bound), so L-BFGS-B needs one pass per iteration instead of six."""
    step = np.sqrt(np.finfo(float).eps) * np.where(x >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(x))
    step = np.where(x + step > bounds[:, 1], -np.abs(step), step)
    step = (x + step) - x
    points = np.vstack([x, x + np.diag(step)])
    totals = hybrid_episode_nll(points, data).sum(axis=1)
    return float(totals[0]), (totals[1:] - totals[0]) / step


def fit_hybrid(trials: dict[str, np.ndarray]) -> dict:
    """Maximum-likelihood hybrid MB/MF learner (module docstring): each parameter's point estimate."""
    from scipy.optimize import minimize

    data = _hybrid_arrays(trials)
    bounds = np.array(HYBRID_BOUNDS, dtype=float)
    best = None
    for w_start in (-1.5, 1.5):  # w's likelihood can have a local optimum at either end
        start = np.array([logit(0.5), np.log(5.0), w_start, logit(0.5), 0.0])
        result = minimize(_nll_and_forward_difference_gradient, start, args=(data, bounds), jac=True,
                          method="L-BFGS-B", bounds=HYBRID_BOUNDS)
        best = result if best is None or result.fun < best.fun else best
    x = best.x
    values = {"alpha": expit(x[0]), "beta": np.exp(x[1]), "w": expit(x[2]), "lambda": expit(x[3]),
              "perseveration": x[4]}
    return {**{name: float(values[name]) for name in HYBRID_PARAMETERS},
            "negative_log_likelihood": float(best.fun), "converged": bool(best.success)}


def second_stage_rpe(trials: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean RPE at second-stage onset (trials.csv's `rpe`) after common and rare transitions."""
    rpe = trials["rpe"]
    common = trials["common"].astype(bool)
    return {"common": float(rpe[common].mean()), "rare": float(rpe[~common].mean())}


def analyze(trials: dict[str, np.ndarray], out_dir: Path, context: dict) -> dict:
    pairs = consecutive_pairs(trials)
    stay = stay_probabilities(pairs)
    regression = stay_regression(pairs)
    with_correct = stay_regression(pairs, correct=True) if "correct" in pairs else None
    clustered = stay_regression(pairs, correct=True, clustered=True) if "correct" in pairs else None
    hybrid = fit_hybrid(trials) if "state" in trials else None
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

    return {"stay_probability": stay, "stay_regression": regression, "stay_regression_with_correct": with_correct,
            "stay_regression_with_correct_clustered": clustered, "hybrid_fit": hybrid,
            "second_stage_rpe": rpe,
            "n_pairs": int(len(pairs["stay"])), "figures": [figure]}


def summary_lines(metrics: dict) -> list[str]:
    stay = metrics["stay_probability"]
    inter = metrics["stay_regression"]["reward_x_transition"]
    p_text = "p < 1e-300 (underflows to 0)" if inter["p"] == 0 else f"p = {inter['p']:.3g}"
    lines = ["stay probability: " + ", ".join(f"{k} {v:.3f}" for k, v in stay.items()),
             f"reward x transition interaction: coef {inter['coef']:.3f}, {p_text}"]
    corrected = metrics.get("stay_regression_with_correct")
    if corrected:
        inter = corrected["reward_x_transition"]
        lines.append(f"  with the correct-choice predictor (Akam et al. 2015): coef {inter['coef']:.3f}, "
                     f"p = {inter['p']:.3g}")
    clustered = metrics.get("stay_regression_with_correct_clustered")
    if clustered:
        lines.append(f"  its p with episodes as the unit (cluster-robust): {clustered['reward_x_transition']['p']:.3g}")
    hybrid = metrics.get("hybrid_fit")
    if hybrid:
        lines.append(f"hybrid MB/MF fit (Daw 2011): w {hybrid['w']:.2f}, alpha {hybrid['alpha']:.2f}, "
                     f"beta {hybrid['beta']:.2f}, lambda {hybrid['lambda']:.2f}")
    return lines
