"""The volatility task (Simulation 2) and its analysis: phase lengths, probabilities and swap
timing; the Rescorla-Wagner fit recovers the rates of a learner whose rates are known."""

import numpy as np
import pytest
import torch

from agent.simulations.registry import make_task
from agent.simulations.rpe import td_rpe
from agent.simulations.volatility.analysis import better_arm_rate, fit_rescorla_wagner


def schedule(task, trials):
    """Play arm 0 for `trials` trials; (phase, p_0, reward) as (trials, B) arrays."""
    task.recording = True
    task.reset()
    records = [task.step(torch.zeros(task.num_envs, dtype=torch.long)).record for _ in range(trials)]
    return {k: torch.stack([r[k] for r in records]).numpy() for k in ("phase", "p_0", "reward")}


def test_test_episodes_have_a_stable_and_a_volatile_phase():
    """Test episodes have one stable and one volatile phase of 100 trials, in random order."""
    s = schedule(make_task("volatility", 400, seed=0, mode="test"), 200)
    assert (s["phase"].sum(0) == 100).all()
    stable_first = s["phase"][0] == 0
    assert 0.4 < stable_first.mean() < 0.6
    assert ((np.diff(s["phase"], axis=0) != 0).sum(0) == 1).all()  # one boundary per episode
    stable = s["phase"] == 0
    assert set(np.round(s["p_0"][stable].astype(float), 3).tolist()) == {0.25, 0.75}
    assert set(np.round(s["p_0"][~stable].astype(float), 3).tolist()) == {0.2, 0.8}
    # the stable phase keeps its better arm throughout
    for row in range(400):
        assert len(np.unique(s["p_0"][stable[:, row], row])) == 1


def test_volatile_blocks_last_20_to_30_trials():
    """Volatile blocks last 20 to 30 trials, and rewards follow the probabilities."""
    s = schedule(make_task("volatility", 400, seed=1, mode="test"), 200)
    lengths = []
    for row in range(400):
        volatile = np.flatnonzero(s["phase"][:, row] == 1)
        swaps = np.flatnonzero(np.diff(s["p_0"][volatile, row]) != 0)
        blocks = np.diff(np.r_[-1, swaps])  # complete blocks before each swap
        lengths.extend(blocks.tolist())
    assert min(lengths) >= 20 and max(lengths) <= 30
    assert abs(float(s["reward"][s["p_0"] > 0.7].mean()) - 0.775) < 0.01  # 0.75 and 0.8 mixed
    train = schedule(make_task("volatility", 400, seed=2), 240)
    phase_lengths = (train["phase"][:200] == 1).sum(0)
    assert phase_lengths.min() >= 80 and phase_lengths.max() <= 120


def rescorla_wagner_agent(task_trials, alphas, beta, rng):
    """Choices of a Rescorla-Wagner learner with known rates on the given schedules."""
    p_0, phase = task_trials["p_0"].T, task_trials["phase"].T  # (episodes, trials)
    episodes, steps = p_0.shape
    values = np.full((episodes, 2), 0.5)
    rows = np.arange(episodes)
    action, reward = np.zeros((episodes, steps), int), np.zeros((episodes, steps))
    for t in range(steps):
        probs = np.exp(beta * values) / np.exp(beta * values).sum(1, keepdims=True)
        action[:, t] = (rng.random(episodes) < probs[:, 1]).astype(int)
        paid = np.where(action[:, t] == 0, p_0[:, t], 1 - p_0[:, t])
        reward[:, t] = rng.random(episodes) < paid
        alpha = np.array(alphas)[phase[:, t].astype(int)]
        chosen = values[rows, action[:, t]]
        values[rows, action[:, t]] = chosen + alpha * (reward[:, t] - chosen)
    return {"episode": np.repeat(np.arange(episodes), steps), "trial": np.tile(np.arange(steps), episodes),
            "action": action.ravel(), "reward": reward.ravel(), "phase": phase.ravel(), "p_0": p_0.ravel()}


@pytest.mark.parametrize("alphas", [(0.1, 0.4), (0.35, 0.15)])
def test_fit_recovers_a_known_rescorla_wagner_agents_rates(alphas):
    """The fit recovers the learning rates of a known Rescorla-Wagner agent."""
    s = schedule(make_task("volatility", 300, seed=3, mode="test"), 200)
    trials = rescorla_wagner_agent(s, alphas, beta=6.0, rng=np.random.default_rng(0))
    fit = fit_rescorla_wagner(trials)
    for phase, true in zip(("stable", "volatile"), alphas):
        low, high = fit[f"alpha_{phase}"]["ci95"]
        assert low <= true <= high and abs(fit[f"alpha_{phase}"]["value"] - true) < 0.06, (phase, fit)
    assert abs(fit["beta"]["value"] - 6.0) < 1.0


def test_better_arm_rate_and_td_rpe_by_hand():
    trials = {"episode": np.array([0, 0, 1]), "action": np.array([0, 1, 1]), "reward": np.array([1.0, 0.0, 1.0]),
              "phase": np.array([0, 1, 1]), "p_0": np.array([0.75, 0.8, 0.2]), "value": np.array([0.5, 0.6, 0.4])}
    assert better_arm_rate(trials) == {"stable": 1.0, "volatile": 0.5}
    np.testing.assert_allclose(td_rpe(trials, gamma=0.9), [1.0 + 0.9 * 0.6 - 0.5, 0.0 - 0.6, 1.0 - 0.4])


def test_eval_writes_the_issue_columns_with_phase_names_values_and_rpes(tmp_path):
    from agent.commands.evaluate import evaluate
    from agent.commands.train import train
    from agent.core.config import resolve_config

    config = resolve_config({"task": "volatility", "episodes": 4, "num_envs": 4, "unroll": 10})
    train(config, tmp_path / "run", progress=False)
    metrics = evaluate(tmp_path / "run", tmp_path / "eval", episodes=3, seed=1)
    lines = (tmp_path / "eval" / "trials.csv").read_text().splitlines()
    assert lines[0] == "episode,trial,phase,action,reward,p_0,p_1,value,rpe"
    assert len(lines) == 1 + 3 * 200
    assert {line.split(",")[2] for line in lines[1:]} == {"stable", "volatile"}
    assert set(metrics["better_arm_rate"]) == {"stable", "volatile"}
    assert metrics["rescorla_wagner_fit"]["alpha_volatile"]["value"] > 0
