"""Analyses on synthetic trials whose answers are known."""

import numpy as np
import pytest

from agent.analysis import bandits, foraging, two_step


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


def test_stay_probabilities_and_regression_separate_model_based_from_model_free():
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


def test_lagged_regression_recovers_a_known_reward_kernel():
    rng = np.random.default_rng(0)
    true_kernel = np.array([1.5, 0.8, 0.4, 0.2, 0.1])
    episodes, trials = 300, 100
    actions, rewards, episode = [], [], []
    for e in range(episodes):
        history = []
        for t in range(trials):
            drive = sum(w * history[-k] for k, w in enumerate(true_kernel, 1) if k <= len(history))
            left = rng.random() < 1 / (1 + np.exp(-drive))
            reward = rng.random() < 0.4
            history.append((1 if left else -1) * reward)
            actions.append(0 if left else 1), rewards.append(float(reward)), episode.append(e)
    trials_data = {"episode": np.array(episode), "action": np.array(actions), "reward": np.array(rewards)}
    fit = foraging.lagged_regression(trials_data)
    assert np.allclose(fit["reward_kernel"], true_kernel, atol=0.15)
    assert np.allclose(fit["choice_kernel"], 0, atol=0.15)


def test_matching_slope_is_one_for_a_strictly_matching_chooser():
    rows = {"episode": [], "action": [], "reward": []}
    for e, (left_choices, left_rewards) in enumerate([(20, 10), (50, 25), (80, 40), (35, 7)]):
        right_choices, right_rewards = 100 - left_choices, {20: 40, 50: 25, 80: 10, 35: 13}[left_choices]
        for i in range(100):
            left = i < left_choices
            got = (i < left_rewards) if left else (i - left_choices < right_rewards)
            rows["episode"].append(e), rows["action"].append(0 if left else 1), rows["reward"].append(float(got))
    fit = foraging.matching({k: np.array(v) for k, v in rows.items()})
    assert fit["slope"] == pytest.approx(1.0, abs=1e-9)


def test_agent_regret_is_the_best_arm_probability_minus_the_chosen_one():
    trials = {"episode": np.array([0, 0, 1, 1]), "action": np.array([0, 1, 1, 1]),
              "p_0": np.array([0.2, 0.2, 0.9, 0.9]), "p_1": np.array([0.7, 0.7, 0.4, 0.4])}
    assert np.allclose(bandits.agent_regret(trials), [[0.5, 0.0], [0.5, 0.5]])
    _, probs = bandits.episode_arm_probs(trials)
    assert probs.tolist() == [[0.2, 0.7], [0.9, 0.4]]


def test_unit_coding_finds_the_variable_each_synthetic_unit_carries():
    rng = np.random.default_rng(0)
    n = 1000
    episode = np.repeat(np.arange(10), 100)
    action, reward, value = rng.integers(2, size=n), rng.integers(2, size=n).astype(float), rng.random(n)
    prev_reward = np.r_[0.0, reward[:-1]]
    hidden = np.column_stack([prev_reward + 0.1 * rng.standard_normal(n), rng.standard_normal(n)])
    fractions = foraging.unit_coding({"episode": episode, "action": action, "reward": reward, "value": value,
                                      "hidden": hidden})
    assert fractions["last_reward"] == 0.5  # unit 0 of 2 codes the previous reward
    assert fractions["value"] <= 0.5
