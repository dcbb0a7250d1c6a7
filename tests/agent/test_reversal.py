"""The reversal task (Simulation 3) and its analysis: block lengths, reversal timing and the cue
and reward rules; the inference index is 1 for an agent that infers the unseen cue's change and
0 for one that updates a cue only when it sees it."""

import json

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.simulations.registry import make_task
from agent.simulations.reversal import analysis
from agent.simulations.reversal.task import BIG_REWARD, SMALL_REWARD


def play(task, trials, policy):
    """Play `trials` trials (fixation + cue step each); records and step observations as (trials, B) arrays."""
    task.recording = True
    task.reset()
    records, fixation_obs, cue_obs, fixation_rewards = [], [], [], []
    obs = task.observe()
    for _ in range(trials):
        fixation_obs.append(obs.clone())
        result = task.step(torch.randint(0, 2, (task.num_envs,)))  # the fixation step's action does nothing
        assert not bool(result.trial_end.any())
        fixation_rewards.append(result.reward)
        cue_obs.append(result.obs.clone())
        result = task.step(policy(result.obs))
        assert bool(result.trial_end.all())
        records.append(result.record)
        obs = result.obs
    stacked = {k: torch.stack([r[k] for r in records]).numpy() for k in records[0]}
    stacked["fixation_obs"] = torch.stack(fixation_obs).numpy()
    stacked["cue_obs"] = torch.stack(cue_obs).numpy()
    stacked["fixation_reward"] = torch.stack(fixation_rewards).numpy()
    return stacked


def answer_the_cue(obs):
    return obs[:, 1:].argmax(1)


def test_blocks_last_15_to_35_trials_and_each_reversal_swaps_the_big_cue():
    s = play(make_task("reversal", 300, seed=0, mode="test"), 100, answer_the_cue)
    lengths = []
    for row in range(300):
        starts = np.flatnonzero(s["trials_since_reversal"][:, row] == 0)
        assert starts[0] == 0
        assert (np.diff(s["big_cue"][:, row]) != 0).sum() == len(starts) - 1  # swaps exactly at block starts
        assert set(np.flatnonzero(np.diff(s["big_cue"][:, row]) != 0) + 1) == set(starts[1:])
        lengths.extend(np.diff(starts).tolist())  # complete blocks
        since = s["trials_since_reversal"][:, row]
        assert (since == np.arange(100) - starts[np.searchsorted(starts, np.arange(100), side="right") - 1]).all()
    assert min(lengths) == 15 and max(lengths) == 35
    assert 0.45 < s["big_cue"][0].mean() < 0.55  # the first block's big cue drawn per episode


def test_fixation_shows_the_mark_and_the_cue_step_one_cue():
    """Fixation shows the mark and pays nothing, and the cue step shows one cue at random."""
    s = play(make_task("reversal", 2000, seed=1, mode="test"), 10, answer_the_cue)
    assert (s["fixation_obs"] == np.array([1.0, 0.0, 0.0])).all()
    assert (s["fixation_reward"] == 0).all()
    assert (s["cue_obs"][..., 0] == 0).all() and (s["cue_obs"][..., 1:].sum(-1) == 1).all()
    assert (s["cue_obs"][..., 1:].argmax(-1) == s["cue"]).all()
    assert abs(s["cue"].mean() - 0.5) < 0.01


def test_the_cues_action_pays_its_size_and_others_nothing():
    """The cue's own action pays its current size, and any other answer nothing."""
    right = play(make_task("reversal", 2000, seed=2, mode="test"), 30, answer_the_cue)
    big = right["cue"] == right["big_cue"]
    assert (right["reward"][big] == BIG_REWARD).all()
    assert np.allclose(right["reward"][~big], SMALL_REWARD)
    wrong = play(make_task("reversal", 2000, seed=2, mode="test"), 30, lambda obs: 1 - answer_the_cue(obs))
    assert (wrong["reward"] == 0).all()


def synthetic_trials(infers: bool, episodes=400, seed=0):
    """trials.csv columns of an agent that always answers right (but errs on 5% of trials) and
    whose cue-onset RPE is +0.25 for the cue it believes big and -0.25 for the other. Its belief
    about a cue changes when it sees that cue's outcome; `infers`: also the other cue's."""
    task = make_task("reversal", episodes, seed=seed, mode="test")
    s = play(task, 100, answer_the_cue)
    rng = np.random.default_rng(seed)
    columns = {k: [] for k in ("episode", "trial", "cue", "big_cue", "trials_since_reversal", "action", "reward",
                               "rpe_cue")}
    for e in range(episodes):
        believed_big = {0: s["big_cue"][0, e] == 0, 1: s["big_cue"][0, e] == 1}  # cue -> believed big
        for t in range(100):
            cue, big = s["cue"][t, e], s["big_cue"][t, e]
            error = rng.random() < 0.05
            for name, value in (("episode", e), ("trial", t), ("cue", cue), ("big_cue", big),
                                ("trials_since_reversal", s["trials_since_reversal"][t, e]),
                                ("action", 1 - cue if error else cue), ("reward", 0.0),
                                ("rpe_cue", 0.25 if believed_big[cue] else -0.25)):
                columns[name].append(value)
            if not error:  # the outcome reveals this cue's size
                believed_big[cue] = cue == big
                if infers:
                    believed_big[1 - cue] = cue != big
    return {k: np.array(v) for k, v in columns.items()}


def test_inference_index_is_one_inferring_zero_per_cue():
    """The inference index is one for an inferring agent and zero for a per-cue learner."""
    inferring = analysis.inference(analysis.reversal_table(synthetic_trials(True)))
    per_cue = analysis.inference(analysis.reversal_table(synthetic_trials(False)))
    for direction in ("newly_big", "newly_small"):
        assert inferring[direction]["inference_index"]["value"] == pytest.approx(1.0)
        assert inferring[direction]["first_has_new_sign"]
        assert per_cue[direction]["inference_index"]["value"] == pytest.approx(0.0)
        assert not per_cue[direction]["first_has_new_sign"]
        assert inferring[direction]["n_reversals"] > 100
    assert inferring["pooled"]["inference_index"]["value"] == pytest.approx(1.0)
    low, high = per_cue["pooled"]["inference_index"]["ci95"]
    assert low <= 0.0 <= high


def test_reversals_with_an_error_at_the_switch_are_excluded():
    """Reversals with an error on the reversal or the first inferred trial are excluded."""
    trials = synthetic_trials(True, episodes=200)
    table = analysis.reversal_table(trials)
    assert table["excluded"]["reversal_trial_error"] > 0 and table["excluded"]["inferred_cue_error"] > 0
    # make every reversal trial an error: no reversal is usable
    at_reversal = (trials["trials_since_reversal"] == 0) & (trials["trial"] > 0)
    trials["action"] = np.where(at_reversal, 1 - trials["cue"], trials["action"])
    table = analysis.reversal_table(trials)
    assert len(table["first"]) == 0 and table["excluded"]["reversal_trial_error"] == at_reversal.sum()


def test_cli_train_and_eval_write_the_columns_and_analysis(tmp_path, capsys):
    """train and eval through the command line write the columns and the analysis."""
    run, out = tmp_path / "run", tmp_path / "eval"
    assert main(["train", "--task", "reversal", "--episodes", "64", "--quiet", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--episodes", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "inference index" in printed
    lines = (out / "trials.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header == ["episode", "trial", "cue", "big_cue", "trials_since_reversal", "action", "reward",
                      "value_fixation", "value_cue", "rpe_cue"]
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    col = {name: rows[:, i] for i, name in enumerate(header)}
    np.testing.assert_allclose(col["rpe_cue"], 0.9 * col["value_cue"] - col["value_fixation"], atol=2e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["inference"]) == {"newly_big", "newly_small", "pooled"}
    assert (out / "reversal_rpe.png").stat().st_size > 1000
