"""The Gymnasium adapter (agent/gym/): `--task gym:ENV_ID` on Gymnasium's own environments and on
Countdown, a small environment written here whose every number is known in advance.

Countdown: observation [t / 10, 1] at step t of the episode; action 0 or 1 pays reward
action + 0.1 t; the episode ends after `length` steps, terminated or truncated as `end` says
(length 0: never); info["new_trial"] is set every `trial_steps` steps, with a scalar step_count
and two fields trials.csv must leave out (a string, an array).
"""

from __future__ import annotations

import csv
import json

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from agent.cli import main
from agent.commands.evaluate import evaluate
from agent.commands.train import train
from agent.core.a2c import discounted_returns_loop
from agent.core.config import resolve_config
from agent.core.rollout import Carry
from agent.core.trainer import Trainer
from agent.simulations.registry import get_task_class, make_task

COUNTDOWN = "FastrnnTest/Countdown-v0"
GAMMA = 0.9


class Countdown(gymnasium.Env):
    def __init__(self, length: int = 3, end: str = "terminate", trial_steps: int = 0):
        self.length, self.end, self.trial_steps = length, end, trial_steps
        self.observation_space = gymnasium.spaces.Box(-10.0, 10.0, shape=(2,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.t = 0

    def _obs(self):
        return np.array([self.t / 10, 1.0], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"step_count": 0}

    def step(self, action):
        reward = float(action) + 0.1 * self.t
        self.t += 1
        ended = self.length > 0 and self.t >= self.length
        info = {"new_trial": bool(self.trial_steps and self.t % self.trial_steps == 0), "step_count": self.t,
                "label": "not a number", "vector": np.ones(2)}
        return self._obs(), reward, ended and self.end == "terminate", ended and self.end == "truncate", info


if COUNTDOWN not in gymnasium.registry:
    gymnasium.register(COUNTDOWN, entry_point=Countdown)


def countdown_trainer(num_envs=2, unroll=12, autoreset_mode=None, **env_kwargs) -> Trainer:
    config = resolve_config({"task": "gym:" + COUNTDOWN, "num_envs": num_envs, "unroll": unroll, "gamma": GAMMA,
                             "core": "reference", "task_options": {"env_kwargs": json.dumps(env_kwargs)}})
    trainer = Trainer(config, keep_hidden=True)
    if autoreset_mode is not None:  # the same trainer on a vector env with the other autoreset convention
        trainer.task.close()
        trainer.task = make_task(config.task, num_envs, seed=7, options=config.task_options,
                                 autoreset_mode=autoreset_mode)
        trainer.carry = Carry.initial(trainer.agent, trainer.task.reset())
    return trainer


def test_next_step_reset_steps_are_out_of_the_loss():
    """Next-step reset steps are out of the loss, and their neighbours start episodes."""
    trainer = countdown_trainer(length=3)
    trainer.collect()
    buf = trainer.buffer
    # Gymnasium 1.x: steps 0-2 are the episode, step 3 the reset step, 4-6 the next episode, ...
    assert buf.valid[:, 0].tolist() == [t % 4 != 3 for t in range(12)]
    # the state resets before the reset step and before the next episode's first step
    assert buf.starts[:, 0].tolist() == [t % 4 in (0, 3) for t in range(12)]
    prev_action_and_reward = buf.inputs[..., 2:]
    assert torch.all(prev_action_and_reward[buf.starts] == 0)
    assert torch.all(prev_action_and_reward[~buf.starts].abs().sum(-1) > 0)  # elsewhere the one-hot is set
    loss, _ = trainer.compute_loss()
    # whatever happened on a reset step changes nothing in the loss
    buf.actions[~buf.valid] = 1 - buf.actions[~buf.valid]
    buf.rewards[~buf.valid] += 5.0
    changed, _ = trainer.compute_loss()
    assert torch.equal(changed.total, loss.total)
    buf.actions[0, 0] = 1 - buf.actions[0, 0]  # a step of an episode does
    assert not torch.equal(trainer.compute_loss()[0].total, loss.total)
    assert trainer.update()["episodes_finished"] == 6  # 3 episode ends per row; reset steps not counted


def test_the_lstm_state_resets_at_each_episode_start():
    trainer = countdown_trainer(length=3)
    trainer.collect()
    buf, agent = trainer.buffer, trainer.agent
    zero = agent.initial_state(1)
    for t in (3, 4, 7, 8):  # reset step and first step of the next episode, twice
        _, _, hidden, _ = agent.unroll(buf.inputs[t : t + 1, :1], zero, None)
        assert torch.allclose(buf.hidden[t, 0], hidden[0, 0], atol=1e-6)
    _, _, from_zero, _ = agent.unroll(buf.inputs[2:3, :1], zero, None)
    assert not torch.allclose(buf.hidden[2, 0], from_zero[0, 0], atol=1e-3)  # mid-episode it does not


def final_observation_value(trainer: Trainer, t: int, row: int, length: int) -> float:
    """V of Countdown's final observation [length / 10, 1] after the episode's last step t, from
    the core state the episode left (the learning pass recomputes it), with its action and reward."""
    buf, agent = trainer.buffer, trainer.agent
    _, _, _, state = agent.unroll(buf.inputs[: t + 1], buf.initial_state, buf.starts[: t + 1])
    x = buf.inputs[t, row : row + 1].clone()
    x[0, :2] = torch.tensor([length / 10, 1.0])
    x[0, 2:4] = torch.nn.functional.one_hot(buf.actions[t, row], 2).float()
    x[0, 4] = buf.rewards[t, row]
    _, value, _, _ = agent.step(x, tuple(s[:, row : row + 1] for s in state), None)
    return float(value)


@pytest.mark.parametrize("autoreset", ["next-step", "same-step"])
def test_truncation_bootstraps_from_the_final_observation(autoreset):
    """Truncation bootstraps from the final observation, and termination does not."""
    mode = None if autoreset == "next-step" else AutoresetMode.SAME_STEP
    period = 4 if autoreset == "next-step" else 3  # same-step has no reset steps
    for end in ("truncate", "terminate"):
        trainer = countdown_trainer(unroll=8, autoreset_mode=mode, length=3, end=end)
        trainer.collect()
        buf = trainer.buffer
        returns = trainer.returns()
        assert torch.allclose(buf.rewards[:3, 0], torch.tensor([0.0, 0.1, 0.2]) + buf.actions[:3, 0].float())
        bootstrap = final_observation_value(trainer, 2, 0, length=3) if end == "truncate" else 0.0
        expected_last = float(buf.rewards[2, 0]) + GAMMA * bootstrap
        assert returns[2, 0].item() == pytest.approx(expected_last, abs=1e-5)
        assert returns[1, 0].item() == pytest.approx(float(buf.rewards[1, 0]) + GAMMA * expected_last, abs=1e-5)
        assert (buf.truncation_values[:, 0] != 0).tolist() == [end == "truncate" and t % period == 2
                                                                for t in range(8)]
        if end == "truncate":
            assert bootstrap != 0.0
        # the oracle's returns with the bootstrap folded into the truncating step's reward
        oracle = discounted_returns_loop(buf.rewards + GAMMA * buf.truncation_values, buf.dones,
                                         buf.bootstrap_value, GAMMA)
        assert torch.allclose(returns, oracle, atol=1e-5)
        if autoreset == "same-step":
            assert bool(buf.valid.all())
        trainer.task.close()


def test_cartpole_time_limit_truncates_with_a_bootstrap_value():
    config = resolve_config({"task": "gym:CartPole-v1", "num_envs": 3, "unroll": 16, "core": "reference",
                             "task_options": {"env_kwargs": '{"max_episode_steps": 5}'}})
    trainer = Trainer(config)
    trainer.collect()
    buf = trainer.buffer
    # 5 steps and a reset step per episode: the pole cannot fall in 5 steps from rest, so all truncate
    truncated = buf.truncation_values != 0
    assert truncated[:, 0].tolist() == [t % 6 == 4 for t in range(16)]
    assert buf.valid[:, 0].tolist() == [t % 6 != 5 for t in range(16)]


@pytest.mark.parametrize("autoreset", [None, AutoresetMode.SAME_STEP])
def test_trials_per_episode_ends_an_episode_after_k_new_trial_flags(autoreset):
    # a trial is 2 steps, so K = 3 trials end each episode after 6 steps; the env never ends by itself
    task = make_task("gym:" + COUNTDOWN, 2, seed=0, autoreset_mode=autoreset,
                     options={"env_kwargs": '{"length": 0, "trial_steps": 2}', "trials_per_episode": "3"})
    obs = task.reset()
    dones, ignored, first_obs = [], [], [obs[0, 0].item()]
    for _ in range(14):
        result = task.step(torch.ones(2, dtype=torch.long))
        dones.append(bool(result.done[0]))
        ignored.append(bool(result.ignored[0]))
        first_obs.append(result.obs[0, 0].item())
        assert result.truncated is None  # a trial limit terminates: no bootstrap past the K trials
    if autoreset is None:  # next-step: episode end at step 5, reset step 6, next episode from step 7
        assert dones == [t in (5, 6, 12, 13) for t in range(14)]
        assert ignored == [t in (6, 13) for t in range(14)]
        assert first_obs[7] == 0.0  # the environment was reset: a fresh episode's first observation
    else:
        assert dones == [t in (5, 11) for t in range(14)]
        assert first_obs[6] == 0.0
    task.close()


def test_staggered_training_starts_shorten_only_the_first_episodes():
    task = make_task("gym:" + COUNTDOWN, 16, seed=3,
                     options={"env_kwargs": '{"length": 0, "trial_steps": 1}', "trials_per_episode": "4"})
    task.reset(stagger=True)
    ends = [task.step(torch.zeros(16, dtype=torch.long)).done.clone() for _ in range(10)]
    first_end = torch.stack(ends).float().argmax(0)
    assert set(first_end.tolist()) <= {0, 1, 2, 3} and len(set(first_end.tolist())) > 1
    # after the first episode (and its reset step) every row plays K = 4 trials
    for row, end in enumerate(first_end.tolist()):
        assert [bool(ends[t][row]) for t in range(end, end + 7)] == [True, True, False, False, False, True, True]
    task.close()


def test_trials_csv_has_the_step_columns_and_scalar_info_fields(tmp_path):
    """trials.csv has episode, step, action, reward and the scalar info fields."""
    config = resolve_config({"task": "gym:" + COUNTDOWN, "num_envs": 2, "unroll": 8, "episodes": 4,
                             "task_options": {"env_kwargs": '{"length": 4, "trial_steps": 2}'}})
    train(config, tmp_path / "run", progress=False)
    metrics = evaluate(tmp_path / "run", tmp_path / "eval", episodes=3, seed=1, progress=False)
    with open(tmp_path / "eval" / "trials.csv") as handle:
        rows = list(csv.reader(handle))
    # the info fields in the order the environment first reports them; label and vector are no scalars
    assert rows[0] == ["episode", "step", "action", "reward", "new_trial", "step_count", "value", "rpe"]
    assert [row[:2] for row in rows[1:]] == [[str(e), str(s)] for e in range(3) for s in range(4)]
    assert [float(row[5]) for row in rows[1:]] == [1, 2, 3, 4] * 3  # the step's own info, not the next reset's
    assert [float(row[4]) for row in rows[1:]] == [0, 1, 0, 1] * 3
    assert [float(row[3]) for row in rows[1:]] == pytest.approx(
        [int(row[2]) + 0.1 * int(row[1]) for row in rows[1:]])
    assert metrics["trials_per_episode"] == 2.0 and "random_actions" in metrics
    assert metrics["reward_per_trial"] == pytest.approx(sum(float(r[3]) for r in rows[1:]) / 6)


def test_async_vector_env_plays_the_same_steps_as_sync():
    buffers = []
    for mode in ("sync", "async"):
        config = resolve_config({"task": "gym:CartPole-v1", "num_envs": 2, "unroll": 30, "core": "reference",
                                 "task_options": {"vector_mode": mode}})
        trainer = Trainer(config)
        trainer.collect()
        buffers.append(trainer.buffer)
        trainer.task.close()
    sync, async_ = buffers
    assert torch.equal(sync.all_inputs, async_.all_inputs) and torch.equal(sync.actions, async_.actions)
    assert bool(sync.all_starts[1:].any())  # an episode ended inside the unroll


def test_a_resumed_gym_run_continues_with_fresh_episodes(tmp_path):
    config = resolve_config({"task": "gym:CartPole-v1", "num_envs": 2, "unroll": 10, "episodes": 12,
                             "checkpoint_every": 1})
    killed = train(config, tmp_path, progress=False, stop_after_updates=2)
    first_episodes = killed.task.vector.envs.call("get_wrapper_attr", "np_random_seed")
    resumed = Trainer(config)
    train(config, tmp_path, progress=False, trainer=resumed)
    assert resumed.episodes >= 12 and resumed.updates > 2
    # the environments could not be saved: the resumed run reset them with a seed of its own
    assert resumed.task.vector.envs.call("get_wrapper_attr", "np_random_seed") != first_episodes


def cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("python -m agent")
             or "error" in line]
    return lines[-1]


@pytest.mark.parametrize("extra, message", [
    (["--task", "gym:NoSuchEnv-v0"], "argument --task: gym:NoSuchEnv-v0: no Gymnasium environment registered"),
    (["--task", "gym:CartPole-v1", "--env-kwargs", "{max_episode_steps: 5"], "--env-kwargs: not valid JSON"),
    (["--task", "gym:CartPole-v1", "--env-kwargs", "[5]"], "--env-kwargs: expected a JSON object"),
    (["--task", "gym:CartPole-v1", "--env-kwargs", '{"no_such_argument": 1}'],
     "--env-kwargs: gymnasium.make('CartPole-v1') with --env-kwargs"),
    (["--task", "gym:Pendulum-v1"], "--task gym:Pendulum-v1: its action space is Box"),
    (["--task", "gym:FrozenLake-v1"], "--task gym:FrozenLake-v1: its observation space is Discrete(16)"),
    (["--task", "gym:CartPole-v1", "--trials-per-episode", "0"], "--trials-per-episode: expected an integer >= 1"),
    (["--task", "gym:CartPole-v1", "--vector-mode", "threads"], "argument --vector-mode: invalid choice"),
])
def test_bad_gym_inputs_are_refused_naming_the_argument(tmp_path, capsys, extra, message):
    """Bad gym inputs are refused in one line naming the argument, before any work."""
    line = cli_error(capsys, ["train", *extra, "--out", str(tmp_path / "run")])
    assert message in line, line
    assert not (tmp_path / "run").exists()


def test_train_eval_and_verify_run_a_gymnasium_env_through_the_cli(tmp_path, capsys):
    run, out = str(tmp_path / "run"), str(tmp_path / "eval")
    assert main(["train", "--task", "gym:CartPole-v1", "--episodes", "6", "--num-envs", "2", "--unroll", "10",
                 "--env-kwargs", '{"max_episode_steps": 20}', "--out", run, "--quiet"]) == 0
    assert main(["eval", run, "--episodes", "3", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "gym:CartPole-v1: 3 test episodes" in printed and "random actions" in printed
    header = (tmp_path / "eval" / "trials.csv").read_text().splitlines()[0]
    assert header == "episode,step,action,reward,value,rpe"
    assert main(["verify", "--task", "gym:CartPole-v1"]) == 0
    assert "PASS gym:CartPole-v1" in capsys.readouterr().out
    assert main(["tasks"]) == 0
    assert "gym:ENV_ID" in capsys.readouterr().out
