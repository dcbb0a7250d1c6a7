"""NeuroGym's tasks through the Gymnasium adapter, where neurogym is installed: its own venv, since
it pins gymnasium 0.29 (bash scripts/setup.sh --neurogym; then
.venv-neurogym/bin/python -m pytest tests/agent/test_gym_neurogym.py). That venv also exercises
Gymnasium 0.29's same-step autoreset, where the final observation comes in the step's info.
"""

from __future__ import annotations

import csv

import pytest
import torch

pytest.importorskip("neurogym")  # an optional extra: the default suite covers the adapter without it

from agent.cli import main  # noqa: E402
from agent.core.config import resolve_config  # noqa: E402
from agent.core.trainer import Trainer  # noqa: E402
from agent.simulations.registry import make_task  # noqa: E402


def test_same_step_autoreset_bootstraps_without_reset_steps():
    """Gymnasium 0.29's same-step autoreset bootstraps truncation without reset steps."""
    import gymnasium

    assert gymnasium.__version__.startswith("0.29")
    config = resolve_config({"task": "gym:CartPole-v1", "num_envs": 3, "unroll": 12, "core": "reference",
                             "task_options": {"env_kwargs": '{"max_episode_steps": 5}'}})
    trainer = Trainer(config)
    assert not trainer.task.vector.next_step
    trainer.collect()
    buf = trainer.buffer
    assert bool(buf.valid.all())  # same-step: every step is the agent's
    assert (buf.truncation_values[:, 0] != 0).tolist() == [t % 5 == 4 for t in range(12)]
    assert buf.dones[:, 0].tolist() == [t % 5 == 4 for t in range(12)]


def test_bandit_trials_per_episode_counts_neurogym_new_trial_flags():
    task = make_task("gym:Bandit-v0", 4, seed=0, options={"env_kwargs": '{"p": [0.2, 0.8]}',
                                                        "trials_per_episode": "7"})
    task.reset()
    dones = [bool(task.step(torch.ones(4, dtype=torch.long)).done.all()) for _ in range(14)]
    assert dones == [t in (6, 13) for t in range(14)]  # every Bandit step is a trial
    task.close()


@pytest.mark.parametrize("env_id", ["DawTwoStep-v0", "Bandit-v0"])
def test_verify_passes_on_neurogym_tasks(env_id, capsys):
    assert main(["verify", "--task", f"gym:{env_id}"]) == 0
    assert f"PASS gym:{env_id}" in capsys.readouterr().out


def test_daw_two_step_trains_and_evaluates_with_neurogym_trial_columns(tmp_path, capsys):
    run, out = str(tmp_path / "run"), str(tmp_path / "eval")
    assert main(["train", "--task", "gym:DawTwoStep-v0", "--trials-per-episode", "10", "--episodes", "8",
                 "--num-envs", "4", "--out", run, "--quiet"]) == 0
    assert main(["eval", run, "--episodes", "3", "--out", out]) == 0
    assert "reward per trial (info['new_trial'])" in capsys.readouterr().out
    with open(tmp_path / "eval" / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["episode", "step", "action", "reward", "new_trial", "performance"]
    for episode in "012":
        assert sum(float(r["new_trial"]) for r in rows if r["episode"] == episode) == 10  # K trials each
