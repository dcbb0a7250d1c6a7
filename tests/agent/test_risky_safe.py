"""The risky-vs-safe task (Simulation 6), the RPE input, forced steps out of the policy loss,
the test-time manipulations and the analysis on synthetic agents whose answer is known."""

import json

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.core.a2c import a2c_loss
from agent.core.config import resolve_config
from agent.core.model import MetaRLAgent
from agent.core.trainer import Trainer
from agent.simulations.registry import make_task
from agent.simulations.risky_safe import analysis
from agent.simulations.risky_safe.task import MANIPULATIONS, RISKY_REWARD, SAFE_REWARD


def play(task, trials, policy):
    """Play `trials` trials; per trial (trials, B) arrays of the record, the observation and
    the StepResult's executed/forced/rpe_offset."""
    task.recording = True
    task.reset()
    out = {k: [] for k in ("obs", "executed", "forced_flag", "offset")}
    records = []
    for _ in range(trials):
        obs = task.observe()
        result = task.step(policy(obs))
        out["obs"].append(obs)
        out["executed"].append(result.executed)
        out["forced_flag"].append(result.forced)
        out["offset"].append(result.rpe_offset if result.rpe_offset is not None else torch.zeros(task.num_envs))
        records.append(result.record)
    stacked = {k: torch.stack(v).numpy() for k, v in out.items()}
    stacked.update({k: torch.stack([r[k] for r in records]).numpy() for k in records[0]})
    return stacked


def always(lever):
    return lambda obs: torch.full((obs.shape[0],), lever, dtype=torch.long)


def test_blocks_alternate_p_and_open_with_forced_trials():
    """Blocks of 20 to 40 trials alternate p and open with two forced trials per lever."""
    s = play(make_task("risky_safe", 300, seed=0, mode="test"), 100, always(0))
    lengths = []
    for row in range(300):
        p = s["p_risky"][:, row]
        changes = np.flatnonzero(np.diff(p) != 0) + 1
        starts = np.r_[0, changes]
        lengths.extend(np.diff(starts).tolist())
        assert set(np.round(p, 3)) <= {0.125, 0.5}
        assert (np.diff(p[starts]) != 0).all()  # p alternates block to block
        forced = s["forced"][:, row].astype(bool)
        expected = np.zeros(100, bool)
        for start in starts:
            expected[start : start + 4] = True
            if start + 4 <= 100:  # a block may start in the episode's last trials
                assert sorted(s["action"][start : start + 4, row].tolist()) == [0, 0, 1, 1]
        assert (forced == expected).all()
        assert len(set(s["risky_action"][:, row])) == 1  # the risky lever is fixed within an episode
    assert min(lengths) == 20 and max(lengths) == 40
    assert 0.45 < s["risky_action"][0].mean() < 0.55


def test_forced_trial_presses_one_lever_whatever_the_agent_does():
    """A forced trial offers and presses one lever, whatever the agent does."""
    s = play(make_task("risky_safe", 500, seed=1, mode="test"), 30, always(1))
    forced = s["forced_flag"]
    assert (forced == s["forced"].astype(bool)).all()
    assert (s["obs"][forced].sum(-1) == 1).all() and (s["obs"][~forced] == 1).all()
    assert (s["executed"][forced] == s["obs"][forced].argmax(-1)).all()
    assert (s["executed"][~forced] == 1).all() and (s["action"] == s["executed"]).all()
    assert (s["executed"][forced] == 0).any()  # the agent's lever 1 was overridden


def test_safe_pays_one_and_risky_pays_four_with_the_blocks_probability():
    s = play(make_task("risky_safe", 4000, seed=2, mode="test"), 100, always(0))
    risky = s["action"] == s["risky_action"]
    assert (s["reward"][~risky] == SAFE_REWARD).all()
    assert set(np.unique(s["reward"][risky])) == {0.0, RISKY_REWARD}
    for p in (0.125, 0.5):
        won = s["reward"][risky & np.isclose(s["p_risky"], p)] > 0
        assert abs(won.mean() - p) < 0.01


@pytest.mark.parametrize("name", [n for n in MANIPULATIONS if n != "control"])
def test_each_manipulation_offsets_exactly_its_outcome(name):
    s = play(make_task("risky_safe", 2000, seed=3, mode="test", options={"manipulation": name}), 30,
             lambda obs: torch.randint(0, 2, (obs.shape[0],)))
    chose_risky, win, offset = MANIPULATIONS[name]
    target = ((s["action"] == s["risky_action"]) == chose_risky) & ((s["reward"] > 0) == win)
    assert target.any() and (~target).any()
    assert (s["offset"][target] == offset).all() and (s["offset"][~target] == 0).all()


def test_training_refuses_a_manipulation():
    with pytest.raises(ValueError, match="--manipulation: a train task plays one condition"):
        make_task("risky_safe", 4, options={"manipulation": "stim_after_risky_loss"})


def test_rpe_input_is_reward_minus_value_zero_at_episode_start():
    """The RPE input is the previous reward minus the value, and zero at an episode start."""
    for reward_input, slots in (("rpe", 1), ("both", 2)):
        agent = MetaRLAgent(2, 2, hidden_size=8, reward_input=reward_input, gamma=0.8)
        assert agent.raw_size == 2 + 2 + slots
        task = make_task("risky_safe", 6, seed=4, options={"manipulation": "control"})
        task.reset()
        result = task.step(torch.zeros(6, dtype=torch.long))
        value = torch.linspace(-1, 1, 6)
        x = agent.next_input(result, torch.zeros(6, dtype=torch.long), value)
        np.testing.assert_allclose(x[:, -1], result.reward - 0.2 * value, rtol=1e-6)
        if reward_input == "both":
            np.testing.assert_allclose(x[:, -2], result.reward)
        np.testing.assert_allclose(x[:, 2:4], torch.nn.functional.one_hot(result.executed, 2).float())
        result.done = torch.tensor([True, False, False, False, False, True])
        result.any_done = True
        x = agent.next_input(result, torch.zeros(6, dtype=torch.long), value)
        assert (x[result.done, 2:] == 0).all()


def test_forced_steps_add_nothing_to_the_policy_gradient():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 2, requires_grad=True)
    values, returns = torch.randn(5, 3), torch.randn(5, 3)
    actions = torch.randint(0, 2, (5, 3))
    free = torch.rand(5, 3) < 0.6
    loss = a2c_loss(logits, values, actions, returns, 0.05, 0.05, policy_mask=free)
    loss.total.backward()
    assert (logits.grad[~free] == 0).all() and (logits.grad[free] != 0).any()
    # on the free steps it equals the unmasked loss restricted to them
    kept = a2c_loss(logits[free].unsqueeze(1), values[free].unsqueeze(1), actions[free].unsqueeze(1),
                    returns[free].unsqueeze(1), 0.05, 0.05)
    assert float(loss.policy.detach()) == pytest.approx(float(kept.policy.detach()), rel=1e-5)
    assert float(loss.entropy.detach()) == pytest.approx(float(kept.entropy.detach()), rel=1e-5)


def test_the_trainer_masks_the_forced_steps_and_feeds_the_rollouts_rpe():
    trainer = Trainer(resolve_config({"task": "risky_safe", "num_envs": 8, "unroll": 30}))
    assert trainer.config.reward_input == "rpe"
    trainer.collect()
    buf = trainer.buffer
    assert (~buf.free).any() and buf.free.any()
    # the RPE slot of each next input is the step's reward minus (1 - gamma) x the value the rollout computed
    with torch.no_grad():
        _, values, _, _ = trainer.agent.unroll(buf.inputs, buf.initial_state, buf.starts)
    rpe_slot = buf.all_inputs[1:, :, -1]
    expected = torch.where(buf.dones, 0.0, buf.rewards - (1 - trainer.config.gamma) * values)
    torch.testing.assert_close(rpe_slot, expected, atol=1e-5, rtol=0)


def synthetic_trials(effect: float, episodes=300, seed=0):
    """Control and stim_after_risky_loss trials of an agent that picks risky with 0.7 in p = 0.5
    blocks and 0.3 in p = 0.125 blocks, plus `effect` on the trial after a risky loss under stimulation."""
    rng = np.random.default_rng(seed)
    parts = []
    for code, condition in enumerate(("control", "stim_after_risky_loss")):
        task_trials = play(make_task("risky_safe", episodes, seed=seed, mode="test"), 100, always(0))
        rows = {k: [] for k in ("episode", "trial", "forced", "p_risky", "risky_action", "action", "reward")}
        for e in range(episodes):
            previous_loss = False
            for t in range(100):
                p, risky_lever = task_trials["p_risky"][t, e], task_trials["risky_action"][t, e]
                forced = task_trials["forced"][t, e]
                prob = (0.7 if p > 0.3 else 0.3) + (effect if condition != "control" and previous_loss else 0.0)
                lever = task_trials["action"][t, e] if forced else (risky_lever if rng.random() < prob else 1 - risky_lever)
                reward = (RISKY_REWARD * (rng.random() < p)) if lever == risky_lever else SAFE_REWARD
                for name, value in (("episode", e), ("trial", t), ("forced", forced), ("p_risky", p),
                                    ("risky_action", risky_lever), ("action", lever), ("reward", reward)):
                    rows[name].append(value)
                previous_loss = lever == risky_lever and reward == 0
        rows = {k: np.array(v) for k, v in rows.items()}
        rows["condition"] = np.full(len(rows["episode"]), analysis.CONDITIONS.index(condition))
        parts.append(rows)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_analysis_finds_a_known_stimulation_effect_only(tmp_path):
    """The analysis finds a known stimulation effect, and none where there is none."""
    metrics = analysis.analyze(synthetic_trials(0.25), tmp_path, {})
    assert metrics["block_difference"]["value"] == pytest.approx(0.4, abs=0.03)
    effect = metrics["manipulation_effects"]["stim_after_risky_loss"]
    assert effect["change"]["value"] == pytest.approx(0.25, abs=0.05) and effect["as_predicted"]
    null = analysis.analyze(synthetic_trials(0.0, seed=1), tmp_path, {})
    effect = null["manipulation_effects"]["stim_after_risky_loss"]
    assert effect["change"]["ci95"][0] < 0 < effect["change"]["ci95"][1] and not effect["as_predicted"]
    assert not null["meets_target"]


def test_eval_plays_control_and_manipulation_on_same_episodes(tmp_path, capsys):
    """eval plays the control and the named manipulation on the same episodes."""
    run = tmp_path / "run"
    assert main(["train", "--task", "risky_safe", "--episodes", "64", "--quiet", "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["eval", str(run), "--episodes", "10", "--manipulation", "stim_after_risky_loss",
                 "--out", str(out)]) == 0
    assert "stim_after_risky_loss: P(risky) after risky loss" in capsys.readouterr().out
    lines = (out / "trials.csv").read_text().splitlines()
    assert lines[0] == "episode,trial,forced,p_risky,risky_action,action,reward,rpe_raw,rpe_input,condition"
    rows = [line.split(",") for line in lines[1:]]
    assert [r[-1] for r in rows] == ["control"] * 1000 + ["stim_after_risky_loss"] * 1000
    for r in rows:
        risky_loss = r[5] == r[4] and float(r[6]) == 0
        offset = 1.0 if r[-1] == "stim_after_risky_loss" and risky_loss else 0.0
        assert float(r[8]) - float(r[7]) == pytest.approx(offset, abs=1e-4)
    # the same test episodes: identical block structure in both conditions
    assert [r[1:5] for r in rows[:1000] if r[2] == "1"][:8] == [r[1:5] for r in rows[1000:] if r[2] == "1"][:8]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["manipulation_effects"]) == {"stim_after_risky_loss"}
