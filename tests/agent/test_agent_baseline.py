"""`python -m agent baseline`: classical learners (the controls of docs/simulations.md) through eval's
pipeline: the same test episodes, trials.csv and metrics.json, the task's own analysis."""

import json
from pathlib import Path

import numpy as np
import pytest

from agent.baselines import registry
from agent.baselines.play import baseline_task_options, play_baseline, run_baseline
from agent.cli import main
from agent.commands.evaluate import read_trials_csv
from agent.simulations.registry import get_task_class

TINY_EPISODES = 4


@pytest.fixture
def coarse_foraging_grid(monkeypatch):
    """The foraging oracle's value iteration on 26 base rates instead of 101 (~1 s, not ~10 s)."""
    monkeypatch.setattr(registry, "FORAGING_GRID_POINTS", 26)


@pytest.mark.parametrize("task,strategy", registry.pairs())
def test_each_control_writes_eval_trials_csv_its_analysis_reads(task, strategy, tmp_path, coarse_foraging_grid):
    """Every (task, strategy) writes trials.csv with eval's header (episode, trial, the task's
    trial and derived columns), one row per trial of every test episode (per condition where
    eval plays several), and metrics.json with the task's analysis, which ran on the rows read
    back from that trials.csv: the file alone feeds the analysis and its figures."""
    metrics = run_baseline(task, strategy, tmp_path, episodes=TINY_EPISODES, seed=3)
    task_class = get_task_class(task)
    header = (tmp_path / "trials.csv").read_text().splitlines()[0].split(",")
    assert header == ["episode", "trial", *task_class.trial_columns, *task_class.derived_columns]
    trials = read_trials_csv(tmp_path / "trials.csv", task_class.column_labels)
    variants = len(task_class.eval_variants(baseline_task_options(task)))
    assert len(trials["episode"]) % (TINY_EPISODES * variants) == 0
    assert sorted(set(trials["episode"].tolist())) == list(range(TINY_EPISODES))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["baseline"]["strategy"] == strategy and saved["task"] == task
    assert saved["figures"] and all(Path(f).is_file() for f in saved["figures"])
    assert metrics["mean_reward_per_trial"] == pytest.approx(float(np.mean(trials["reward"])))


@pytest.mark.parametrize("task,columns", [("two_step", ("common", "good_state")), ("volatility", ("phase", "p_0"))])
def test_a_control_meets_the_same_test_episodes_as_the_agent_in_eval(task, columns):
    """For a given seed the task's own draws (transitions and good state; phases and arm
    probabilities) are those eval's frozen agent meets: an untrained agent played through
    evaluate.play_frozen and each control agree on them trial by trial."""
    import torch

    from agent.commands.evaluate import play_frozen
    from agent.core.config import resolve_config
    from agent.core.trainer import make_agent

    config = resolve_config({"task": task})
    options = baseline_task_options(task)
    torch.manual_seed(0)
    weights = make_agent(config, get_task_class(task), core="fast").state_dict()
    agent_trials = play_frozen(config, weights, options, episodes=6, seed=11, device="cpu", core="fast")[0]
    for strategy in registry.strategies_for(task):
        trials = play_baseline(task, strategy, episodes=6, seed=11, options=options)[0]
        for column in columns:
            assert np.array_equal(trials[column], agent_trials[column]), (strategy, column)


def _two_step(strategy, tmp_path, episodes=300):
    return run_baseline("two_step", strategy, tmp_path, episodes=episodes, seed=2018)


def test_model_free_two_step_stays_after_reward_whatever_the_transition(tmp_path):
    """SARSA(lambda=1) on 300 episodes, read by the two-step analysis from trials.csv: a large
    reward main effect, and no reward x transition interaction once the regression has the
    correct-choice predictor (Akam et al. 2015). Without it the plain interaction is positive
    too (a model-free learner passes that criterion on this task: the control that shows the
    plain regression is not evidence of planning)."""
    m = _two_step("model_free", tmp_path)
    plain, corrected = m["stay_regression"], m["stay_regression_with_correct"]
    assert plain["reward"]["coef"] > 0.7 and plain["reward"]["p"] < 1e-10
    assert abs(corrected["reward_x_transition"]["coef"]) < 0.2
    assert corrected["reward"]["coef"] > 0.7
    stay = m["stay_probability"]
    assert min(stay["common_rewarded"], stay["rare_rewarded"]) > max(stay["common_unrewarded"],
                                                                       stay["rare_unrewarded"])
    assert plain["reward_x_transition"]["coef"] > 0.3  # Akam's confound: see the docstring


def test_model_based_two_step_shows_the_reward_by_transition_interaction(tmp_path):
    """The planner that knows the 0.8/0.2 transitions, 300 episodes: stays after common-rewarded
    and rare-unrewarded, switches after rare-rewarded and common-unrewarded; a strong interaction
    with or without the correct-choice predictor and no reward main effect."""
    m = _two_step("model_based", tmp_path)
    plain, corrected = m["stay_regression"], m["stay_regression_with_correct"]
    assert plain["reward_x_transition"]["coef"] > 0.8 and plain["reward_x_transition"]["p"] < 1e-10
    assert corrected["reward_x_transition"]["coef"] > 0.4 and corrected["reward_x_transition"]["p"] < 1e-10
    assert abs(plain["reward"]["coef"]) < 0.15
    stay = m["stay_probability"]
    assert min(stay["common_rewarded"], stay["rare_unrewarded"]) > 0.8
    assert max(stay["rare_rewarded"], stay["common_unrewarded"]) < 0.6


def test_model_free_reversal_learner_does_not_infer_the_unseen_cue(tmp_path):
    """TD on experienced values only: the other cue's onset RPE at its first showing after a
    reversal is still its old value's, so the inference index stays near 0 and the reversal
    criterion (index >= 0.5, first RPE of the new sign both ways) fails."""
    m = run_baseline("reversal", "model_free", tmp_path, episodes=60, seed=2018)
    assert abs(m["inference"]["pooled"]["inference_index"]["value"]) < 0.2
    assert not m["meets_target"]


def test_risky_safe_control_plays_every_condition_on_the_same_episodes(tmp_path):
    """risky_safe is played once per eval condition (control and the three manipulations), same
    seed, rows stacked; the Q-learner's RPE input is its own error plus the manipulation's offset."""
    from agent.simulations.risky_safe.task import MANIPULATIONS, manipulation_offset

    run_baseline("risky_safe", "q_learning", tmp_path, episodes=3, seed=5)
    trials = read_trials_csv(tmp_path / "trials.csv", get_task_class("risky_safe").column_labels)
    conditions = tuple(MANIPULATIONS)
    assert sorted(set(trials["condition"].tolist())) == list(range(len(conditions)))
    for code, name in enumerate(conditions):
        rows = trials["condition"] == code
        offset = manipulation_offset(name, trials["action"][rows] == trials["risky_action"][rows],
                                     trials["reward"][rows] > 0)
        assert np.allclose(trials["rpe_input"][rows], trials["rpe_raw"][rows] + offset, atol=1e-5)
        assert np.array_equal(trials["p_risky"][rows], trials["p_risky"][trials["condition"] == 0])


def test_baseline_command_writes_eval_files_and_prints_eval_summary(tmp_path, capsys):
    """The command line: exit 0, eval's summary lines after the strategy's, trials.csv with a
    row per trial of each episode."""
    out = tmp_path / "thompson"
    assert main(["baseline", "--task", "bandit_independent", "--strategy", "thompson", "--episodes", "3",
                 "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("baseline thompson: Thompson sampling")
    assert "cumulative regret at last trial" in printed
    assert (out / "trials.csv").read_text().count("\n") == 1 + 3 * 100


@pytest.mark.parametrize("argv,message", [
    (["--task", "two_step", "--strategy", "thompson"],
     "--strategy: 'thompson' does not fit task 'two_step' (it plays bandit_"),
    (["--task", "two_step", "--strategy", "thompson"], "strategies for two_step: model_free, model_based"),
    (["--task", "two_step", "--strategy", "nope"],
     "--strategy: unknown strategy 'nope' for task 'two_step'; choose from model_free, model_based"),
    (["--task", "no_such_task", "--strategy", "random"],
     "--task: unknown task 'no_such_task'; tasks with strategies: two_step, foraging"),
    (["--task", "gym:CartPole-v1", "--strategy", "random"],
     "--task: no baseline strategies for task 'gym:CartPole-v1'"),
    (["--task", "two_step", "--strategy", "model_free", "--positions", "balanced"],
     "--positions: not an eval option of task 'two_step'"),
    (["--task", "two_step", "--strategy", "model_free", "--episodes", "0"], "argument --episodes: must be >= 1"),
])
def test_bad_baseline_input_is_refused_in_one_line_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    """Unknown task, a task without strategies, an unknown strategy, a strategy on a task it
    does not fit, a task flag the task does not take: status 2, one error line that lists the
    valid choices, nothing written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", *argv, "--out", "X"])
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert not (tmp_path / "X").exists()
