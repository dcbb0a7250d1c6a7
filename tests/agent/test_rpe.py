"""Each task's value and RPE columns (derive_columns) are the ones docs/simulations.md defines,
computed from the per-trial value estimates eval records, by hand on small tables."""

import numpy as np
import pytest

from agent.simulations.registry import get_task_class, make_task, task_names

GAMMA = 0.9
# two episodes: 3 trials, then 2; value: V at each trial's first step, value_last: at its last
TRIALS = {"episode": np.array([0, 0, 0, 1, 1]), "trial": np.array([0, 1, 2, 0, 1]),
          "reward": np.array([1.0, 0.0, 1.0, 0.2, 1.0]), "action": np.array([0, 1, 0, 1, 1]),
          "risky_action": np.array([0, 0, 0, 1, 1]),
          "value": np.array([0.5, 0.6, 0.4, 0.3, 0.7]), "value_last": np.array([0.8, 0.1, 0.9, 0.2, 1.0])}


def test_one_step_tasks_use_the_outcome_rpe():
    """One-step tasks use the outcome RPE, with no value after an episode ends."""
    for name in ("foraging", "volatility", "bandit_independent"):
        derived = make_task(name, 1).derive_columns(TRIALS, GAMMA)
        np.testing.assert_allclose(derived["value"], TRIALS["value"])
        np.testing.assert_allclose(derived["rpe"], [1 + GAMMA * 0.6 - 0.5, 0 + GAMMA * 0.4 - 0.6, 1 - 0.4,
                                                    0.2 + GAMMA * 0.7 - 0.3, 1 - 0.7])


def test_two_step_uses_the_rpe_at_second_stage_onset():
    derived = make_task("two_step", 1).derive_columns(TRIALS, GAMMA)
    np.testing.assert_allclose(derived["rpe"], GAMMA * TRIALS["value_last"] - TRIALS["value"])


def test_harlow_values_the_choice_step_and_its_outcome():
    derived = make_task("harlow", 1).derive_columns(TRIALS, GAMMA)
    np.testing.assert_allclose(derived["value"], TRIALS["value_last"])
    np.testing.assert_allclose(derived["rpe"][:2], [1 + GAMMA * 0.6 - 0.8, 0 + GAMMA * 0.4 - 0.1])
    assert derived["rpe"][2] == pytest.approx(1 - 0.9)


def test_reversal_takes_the_cue_onset_rpe():
    """Reversal splits fixation and cue values and takes the cue-onset RPE."""
    derived = make_task("reversal", 1).derive_columns(TRIALS, GAMMA)
    np.testing.assert_allclose(derived["rpe_cue"], GAMMA * TRIALS["value_last"] - TRIALS["value"])
    np.testing.assert_allclose(derived["value_fixation"], TRIALS["value"])
    np.testing.assert_allclose(derived["value_cue"], TRIALS["value_last"])


def test_risky_safe_feeds_and_records_the_rpe_that_does_not_look_ahead():
    derived = make_task("risky_safe", 1).derive_columns(TRIALS, GAMMA)
    np.testing.assert_allclose(derived["rpe_raw"], TRIALS["reward"] - (1 - GAMMA) * TRIALS["value"])
    np.testing.assert_allclose(derived["rpe_input"], derived["rpe_raw"])  # control: no offset


def test_every_task_derives_exactly_the_columns_it_declares():
    for name in task_names():
        task = make_task(name, 1)
        assert tuple(task.derive_columns(TRIALS, GAMMA)) == get_task_class(name).derived_columns, name
