"""Harlow analyses on synthetic trials whose answers are known (no training)."""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest

from agent.commands.evaluate import _json_default
from agent.simulations.harlow import analysis as harlow

TRIALS = 6
OBJECTS = 20


def fake_context(positions="balanced", quantile_trials=None):
    rng = np.random.default_rng(0)
    objects = SimpleNamespace(images=rng.random((OBJECTS, 64), dtype=np.float32), labels=np.arange(OBJECTS))
    task = SimpleNamespace(objects=objects,
                           options={"positions": positions, "holdout": "images", "objects": "digits"})
    return {"task": task, "config": SimpleNamespace(episodes=1000), "seed": 0,
            "quantile_trials": quantile_trials or {}, "run_dir": None}


def episode_rows(episode, sides_left, rewarded_id, other_id, chose_rewarded, fixated=()):
    """One episode's rows: sides_left[k] puts the rewarded object left on trial k; the agent picks it
    where chose_rewarded[k], the other one elsewhere, and withholds its choice on the trials in fixated."""
    rows = []
    for k, (left, good) in enumerate(zip(sides_left, chose_rewarded)):
        left_id, right_id = (rewarded_id, other_id) if left else (other_id, rewarded_id)
        chosen = rewarded_id if good else other_id
        action = 0 if k in fixated else (1 if chosen == left_id else 2)
        rows.append({"episode": episode, "trial": k, "left_id": left_id, "right_id": right_id,
                     "rewarded_id": rewarded_id, "action": action, "chosen_id": -1 if action == 0 else chosen,
                     "reward": 1.0 if good and action != 0 else -1.0, "value": 0.0, "value_last": 0.0})
    return rows


def to_columns(rows):
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def synthetic_trials(accuracy_by_trial, episodes=400, positions="balanced", fixate_rate=0.0, seed=1):
    """Random episodes played by an agent correct with the given probability on each trial."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(episodes):
        rewarded_id, other_id = rng.choice(OBJECTS, size=2, replace=False)
        if positions == "balanced":
            sides = rng.permutation([True] * (TRIALS // 2) + [False] * (TRIALS // 2))
        else:
            sides = rng.random(TRIALS) < 0.5
        good = rng.random(TRIALS) < np.asarray(accuracy_by_trial)
        fixated = np.flatnonzero(rng.random(TRIALS) < fixate_rate)
        rows += episode_rows(e, sides, int(rewarded_id), int(other_id), good, set(fixated.tolist()))
    return to_columns(rows)


def test_accuracy_by_trial_is_the_hand_counted_fraction():
    """Accuracy by trial is the hand-counted fraction correct, inside its CI."""
    trials = synthetic_trials([0.5, 0.8, 0.9, 0.95, 0.95, 0.95], fixate_rate=0.05)
    result = harlow.accuracy_by_trial(trials)
    assert [row["trial"] for row in result] == list(range(1, TRIALS + 1))
    for k, row in enumerate(result):
        rewards = [r for r, t in zip(trials["reward"], trials["trial"]) if t == k]
        assert row["n"] == len(rewards) == 400
        assert row["accuracy"] == pytest.approx(sum(r > 0 for r in rewards) / len(rewards))
        low, high = row["ci95"]
        assert low < row["accuracy"] < high and high - low < 0.15


def test_a_withheld_choice_counts_as_an_error_and_in_the_no_choice_rate(tmp_path):
    trials = to_columns(episode_rows(0, [True] * TRIALS, 3, 4, [True] * TRIALS, fixated={0, 1}))
    metrics = harlow.analyze(trials, tmp_path, fake_context())
    assert [row["accuracy"] for row in metrics["accuracy_by_trial"]] == [0, 0, 1, 1, 1, 1]
    assert metrics["no_choice_rate"] == pytest.approx(2 / TRIALS)


def test_trial2_split_counts_each_episode_under_its_own_trial1_outcome():
    # trial 1 / trial 2 correct: (yes, yes), (yes, no), (no, yes), (no, yes), (no, no)
    outcomes = [(1, 1), (1, 0), (0, 1), (0, 1), (0, 0)]
    rows = []
    for e, (first, second) in enumerate(outcomes):
        rows += episode_rows(e, [True, False], 1, 2, [bool(first), bool(second)])
    split = harlow.trial2_after_trial1(to_columns(rows))
    assert split["correct"]["n"] == 2 and split["correct"]["accuracy"] == pytest.approx(1 / 2)
    assert split["wrong"]["n"] == 3 and split["wrong"]["accuracy"] == pytest.approx(2 / 3)


def test_blind_ceiling_over_every_arrangement_is_exact():
    """The blind ceiling over every balanced arrangement is the exact expectation."""
    # All 20 orders of 3 left + 3 right, equally likely: E[max(remaining L, remaining R) / remaining]
    # is 3/6, 3/5, (2/5*3/4 + 3/5*2/4), (1/10*1 + 9/10*2/3), (2/5*1 + 3/5*1/2), 1.
    rows = []
    for e, lefts in enumerate(itertools.combinations(range(TRIALS), TRIALS // 2)):
        rows += episode_rows(e, [k in lefts for k in range(TRIALS)], 1, 2, [True] * TRIALS)
    ceiling = harlow.stimulus_blind_ceiling(to_columns(rows), "balanced")
    assert ceiling == pytest.approx([1 / 2, 3 / 5, 3 / 5, 7 / 10, 7 / 10, 1.0])


def test_blind_ceiling_of_random_episodes_is_near_exact():
    """The blind ceiling of random balanced episodes is near the exact expectation."""
    ceiling = harlow.stimulus_blind_ceiling(synthetic_trials([1.0] * TRIALS, episodes=3000), "balanced")
    assert ceiling == pytest.approx([0.5, 0.6, 0.6, 0.7, 0.7, 1.0], abs=0.02)
    assert ceiling[0] == 0.5 and ceiling[-1] == 1.0  # exact whatever the draw


def test_blind_ceiling_is_chance_on_every_trial_with_independent_positions():
    trials = synthetic_trials([1.0] * TRIALS, positions="independent")
    assert harlow.stimulus_blind_ceiling(trials, "independent") == [0.5] * TRIALS


def test_quantile_accuracy_has_one_curve_per_quantile_from_its_own_trials(tmp_path):
    early = synthetic_trials([0.5] * TRIALS, seed=2)
    late = synthetic_trials([0.5] + [1.0] * (TRIALS - 1), seed=3)
    final = synthetic_trials([0.5] + [1.0] * (TRIALS - 1), seed=4)
    metrics = harlow.analyze(final, tmp_path, fake_context(quantile_trials={1: early, 10: late}))
    assert set(metrics["quantile_accuracy"]) == {"1", "10"}
    assert metrics["quantile_accuracy"]["1"] == [row["accuracy"] for row in harlow.accuracy_by_trial(early)]
    assert metrics["quantile_accuracy"]["10"][1:] == [1.0] * (TRIALS - 1)
    assert len(metrics["quantile_ci95"]["10"]) == TRIALS


def test_analyze_writes_small_figures_and_json_ready_metrics(tmp_path):
    trials = synthetic_trials([0.5, 0.9, 0.9, 0.9, 0.9, 0.9], fixate_rate=0.02)
    quantiles = {q: synthetic_trials([0.5] + [0.5 + q / 20] * (TRIALS - 1), seed=q) for q in range(1, 11)}
    metrics = harlow.analyze(trials, tmp_path, fake_context("independent", quantiles))
    assert {p.rsplit("/", 1)[-1] for p in metrics["figures"]} == {"harlow_accuracy.png", "harlow_episodes.png"}
    for path in metrics["figures"]:
        size = (tmp_path / path.rsplit("/", 1)[-1]).stat().st_size
        assert 0 < size < 150_000
    assert metrics["test_objects"] == {"holdout": "images", "objects": "digits", "positions": "independent"}
    assert metrics["no_choice_rate"] == pytest.approx(np.mean(trials["action"] == 0))
    assert json.loads(json.dumps(metrics, default=_json_default))["stimulus_blind_ceiling"] == [0.5] * TRIALS
    lines = harlow.summary_lines(metrics)
    assert sum(line.startswith("  trial ") for line in lines) == TRIALS
