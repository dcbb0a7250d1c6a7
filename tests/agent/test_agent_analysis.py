"""Analyses on synthetic trials whose answers are known."""

import numpy as np
import pytest

from agent.simulations.bandits import analysis as bandits
from agent.simulations.two_step import analysis as two_step


def synthetic_two_step(model_based: bool, episodes=200, trials=100, seed=0):
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("episode", "trial", "action", "reward", "common")}
    for e in range(episodes):
        action = rng.integers(2)
        for t in range(trials):
            reward, common = rng.integers(2), rng.random() < 0.8
            rows["episode"].append(e), rows["trial"].append(t), rows["action"].append(action)
            rows["reward"].append(reward), rows["common"].append(int(common))
            # model-based: stay iff (rewarded and common) or (unrewarded and rare); model-free: iff rewarded
            stay = (reward == common) if model_based else bool(reward)
            if rng.random() < 0.1:
                stay = not stay
            action = action if stay else 1 - action
    return {k: np.array(v) for k, v in rows.items()}


def test_stay_and_regression_separate_model_based_from_free():
    """Stay probabilities and the regression separate model-based from model-free."""
    mb = two_step.consecutive_pairs(synthetic_two_step(True))
    stay = two_step.stay_probabilities(mb)
    assert stay["common_rewarded"] == pytest.approx(0.9, abs=0.02)
    assert stay["rare_unrewarded"] == pytest.approx(0.9, abs=0.03)
    assert stay["rare_rewarded"] == pytest.approx(0.1, abs=0.03)
    reg = two_step.stay_regression(mb)
    assert reg["reward_x_transition"]["coef"] > 1 and reg["reward_x_transition"]["p"] < 1e-10
    assert abs(reg["reward"]["coef"]) < 0.1
    mf = two_step.stay_regression(two_step.consecutive_pairs(synthetic_two_step(False)))
    assert mf["reward"]["coef"] > 1 and abs(mf["reward_x_transition"]["coef"]) < 0.1


def test_consecutive_pairs_never_cross_an_episode_boundary():
    trials = {"episode": np.array([0, 0, 1, 1]), "action": np.array([0, 0, 0, 1]),
              "reward": np.array([1, 0, 1, 1]), "common": np.array([1, 1, 1, 1])}
    pairs = two_step.consecutive_pairs(trials)
    assert pairs["stay"].tolist() == [1, 0]


def test_agent_regret_is_the_best_arm_probability_minus_the_chosen_one():
    trials = {"episode": np.array([0, 0, 1, 1]), "action": np.array([0, 1, 1, 1]),
              "p_0": np.array([0.2, 0.2, 0.9, 0.9]), "p_1": np.array([0.7, 0.7, 0.4, 0.4])}
    assert np.allclose(bandits.agent_regret(trials), [[0.5, 0.0], [0.5, 0.5]])
    _, probs = bandits.episode_arm_probs(trials)
    assert probs.tolist() == [[0.2, 0.7], [0.9, 0.4]]


def test_hybrid_nll_of_a_batch_is_each_vector_alone_and_its_gradient_is_scipys():
    """The hybrid fit evaluates the point and its finite-difference steps in one pass: each row of
    that pass is the single-vector NLL, and the gradient matches scipy's own 2-point scheme."""
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(3)
    data = {"action": rng.integers(2, size=(30, 40)), "state": rng.integers(2, size=(30, 40)),
            "reward": rng.integers(2, size=(30, 40)).astype(float)}
    points = rng.normal(size=(4, 5))
    batched = two_step.hybrid_episode_nll(points, data)
    for row, point in zip(batched, points):
        np.testing.assert_array_equal(row, two_step.hybrid_episode_nll(point, data))
    bounds = np.array(two_step.HYBRID_BOUNDS, dtype=float)
    value, gradient = two_step._nll_and_forward_difference_gradient(points[0], data, bounds)
    total = lambda x: two_step.hybrid_episode_nll(x, data).sum()  # noqa: E731
    assert value == pytest.approx(total(points[0]))
    np.testing.assert_allclose(gradient, approx_fprime(points[0], total), rtol=1e-4, atol=1e-4)
