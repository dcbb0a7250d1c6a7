"""The real command line on tiny settings: python -m agent {tasks,train,eval,verify}, and its
argument errors (each names the argument and comes before any work)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.simulations.registry import family_classes, task_names

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_tasks_lists_every_registered_task_with_a_description():
    out = run_cli("tasks")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines()]
    assert listed == task_names() + [f"{family.name}:ENV_ID" for family in family_classes()], out.stderr
    assert all(len(line.split(maxsplit=1)) == 2 for line in out.stdout.splitlines())


@pytest.mark.slow
def test_train_then_eval_through_the_command_line(tmp_path):
    run, ev = tmp_path / "run", tmp_path / "eval"
    out = run_cli("train", "--task", "bandit_independent", "--seed", "3", "--core", "fast", "--episodes", "8",
                  "--num-envs", "4", "--unroll", "20", "--out", str(run))
    assert out.returncode == 0, out.stderr
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.jsonl").is_file()
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    out = run_cli("eval", str(run), "--episodes", "5", "--seed", "1", "--out", str(ev))
    assert out.returncode == 0, out.stderr
    assert "cumulative regret" in out.stdout
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics["regret_at_last_trial"]) == {"agent", "thompson", "ucb1", "gittins", "rescorla_wagner"}
    assert (ev / "trials.csv").read_text().count("\n") == 1 + 5 * 100
    assert (ev / "cumulative_regret.png").is_file()


def test_verify_command_passes_for_one_task_and_exits_zero(capsys):
    assert main(["verify", "--task", "foraging"]) == 0
    assert capsys.readouterr().out.startswith("PASS foraging: OK")


@pytest.mark.parametrize("argv,message", [
    (["train", "--task", "no_such_task", "--out", "X"], "argument --task: unknown task 'no_such_task'"),
    (["train", "--task", "two_step", "--episodes", "0", "--out", "X"], "argument --episodes: must be >= 1"),
    (["train", "--task", "two_step", "--num-envs", "many", "--out", "X"], "argument --num-envs: expected an integer"),
    (["train", "--task", "two_step", "--core", "slow", "--out", "X"], "argument --core: invalid choice: 'slow'"),
    (["train", "--task", "two_step", "--gamma", "1.5", "--out", "X"], "--gamma must be in [0, 1]"),
    (["train", "--task", "two_step"], "the following arguments are required: --out"),
    (["train", "--task", "two_step", "--positions", "balanced", "--out", "X"],
     "--positions: not an option of task 'two_step'"),
    (["train", "--task", "harlow", "--holdout", "pixels", "--out", "X"], "argument --holdout: invalid choice"),
    (["train", "--task", "harlow", "--objects", "no/such/dir", "--out", "X"], "--objects: expected 'digits', 'procedural' or a"),
    (["train", "--task", "two_step", "--optimizer", "sgd", "--out", "X"], "argument --optimizer: invalid choice"),
    (["eval", "does/not/exist", "--out", "X"], "argument RUN_DIR: no checkpoint at does/not/exist"),
    (["eval", "R", "--episodes", "-3", "--out", "X"], "argument --episodes: must be >= 1"),
    (["verify", "--task", "nope"], "argument --task: unknown task 'nope'"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_arguments_fail_with_a_message_naming_the_argument(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "X").exists()  # nothing was written


@pytest.mark.parametrize("argv", [
    ["train", "--task", "two_step", "--episodes", "8"], ["eval", "R", "--episodes", "5"],
    ["demo"], ["reproduce", "--sim", "4", "--seeds", "1"],
    ["baseline", "--task", "two_step", "--strategy", "model_free", "--episodes", "5"],
])
def test_an_out_that_cannot_be_created_is_refused_naming_it(argv, capsys, tmp_path, monkeypatch):
    """--out under a file: every command raised NotADirectoryError from its first write, with a
    traceback and after its set-up; now argparse refuses it, naming the path in the way."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", "a_file/run"])
    assert exit_info.value.code == 2
    assert "argument --out: cannot create a_file/run: " in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "in the way"


def test_cuda_request_without_cuda_is_refused_before_any_work(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        main(["train", "--task", "two_step", "--device", "cuda", "--out", str(tmp_path / "run")])
    assert "--device" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("task, episodes", [("two_step", 12_000), ("harlow", None)])
def test_demo_trains_the_episodes_its_figure_needs(tmp_path, monkeypatch, task, episodes):
    """demo trains two_step for DEMO_TRAIN_EPISODES (12k, where the criterion held on 5 of 5
    seeds) and other tasks for their defaults, then evaluates on the demo's test episodes."""
    from agent import cli
    from agent.core.config import resolve_config

    seen = {}
    monkeypatch.setattr("agent.commands.train.train", lambda config, run_dir, progress: seen.update(config=config))
    monkeypatch.setattr("agent.commands.evaluate.evaluate",
                        lambda run, out, episodes, device, core: seen.update(test=episodes) or {"figures": ["f.png"]})
    monkeypatch.setattr(cli, "summarize", lambda metrics: "")
    assert cli.main(["demo", "--task", task, "--out", str(tmp_path / "d"), "--quiet"]) == 0
    default = resolve_config({"task": task}).episodes
    assert seen["config"].episodes == (episodes or default)
    assert seen["test"] == cli.DEMO_EPISODES[task]
