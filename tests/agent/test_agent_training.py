"""Trainer, cores, verify, checkpoint-resume and frozen evaluation."""

import dataclasses
import hashlib
import json

import pytest
import torch

import fastrnn
from agent.commands import verify as verify_module
from agent.commands.evaluate import evaluate
from agent.commands.train import train
from agent.core import cores, rollout
from agent.core.config import resolve_config
from agent.core.trainer import Trainer
from agent.simulations.registry import task_names
from tests.fastrnn.native_calls import count_native_calls


def tiny_config(**overrides):
    values = {"task": "two_step", "num_envs": 4, "unroll": 10, "episodes": 8, "checkpoint_every": 7,
              "log_every": 5, **overrides}
    return resolve_config(values)


@pytest.mark.parametrize("task", task_names())
def test_verify_passes_for_every_registered_task(task):
    result = verify_module.verify_task(task)
    assert result.ok, result.message
    assert result.details["episode_boundaries"] > 0  # the unroll crossed episode resets


class LSTMIgnoringResetsInSequenceMode(fastrnn.LSTM):
    """A deliberately broken core: the learning pass leaks state across episode boundaries."""

    def forward(self, x, hx=None, *, resets=None):
        if x.shape[0] > 1:
            resets = None
        return super().forward(x, hx, resets=resets)


def test_verify_names_the_first_step_where_a_broken_core_disagrees(monkeypatch):
    original = cores.make_core

    def make_broken(name, input_size, hidden_size):
        if name == "reference":
            return LSTMIgnoringResetsInSequenceMode(input_size, hidden_size, backend="reference")
        return original(name, input_size, hidden_size)

    # where the first episode boundary falls in verify's unroll (its config, its seeds)
    probe = Trainer(resolve_config({"task": "bandit_independent", "num_envs": 4, "unroll": 14, "seed": 0}),
                    trials_per_episode=4)
    probe.collect()
    first_reset = int(probe.buffer.starts[1:].any(dim=1).nonzero()[0, 0]) + 1
    monkeypatch.setattr("agent.core.model.make_core", make_broken)
    result = verify_module.verify_task("bandit_independent", trials_per_episode=4)
    assert not result.ok
    assert f"reference core: learning-pass hidden state differs from its rollout at step {first_reset} " \
        in result.message


def test_verify_fails_when_the_fast_core_runs_the_reference_backend(monkeypatch):
    """Comparing the reference with itself proves nothing: verify must not report OK."""
    original = cores.make_core

    def make(name, input_size, hidden_size):
        if name == "fast":
            return fastrnn.LSTM(input_size, hidden_size, backend="reference")
        return original(name, input_size, hidden_size)

    monkeypatch.setattr("agent.core.model.make_core", make)
    result = verify_module.verify_task("bandit_independent", trials_per_episode=4)
    assert not result.ok
    assert "fast core resolved to the reference backend" in result.message


def test_torch_core_matches_the_reference_loss_and_gradients():
    """The torch core computes the same loss and gradients as the reference core."""
    trainers = {core: Trainer(tiny_config(core=core), trials_per_episode=3) for core in ("reference", "torch")}
    trainers["torch"].agent.load_state_dict(trainers["reference"].agent.state_dict())
    grads = {}
    for core, trainer in trainers.items():
        trainer.collect()
        loss, _ = trainer.compute_loss()
        loss.total.backward()
        grads[core] = [p.grad.clone() for p in trainer.agent.parameters()]
    assert trainers["torch"].buffer.dones.any()
    for a, b in zip(grads["reference"], grads["torch"]):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def _metrics_without_timings(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("steps_per_second"), line.pop("train_seconds")
    return lines


def test_killed_run_resumes_identical_to_an_uninterrupted_one(tmp_path):
    """A killed run resumes from its checkpoint and ends identical to an uninterrupted one."""
    config = tiny_config()
    whole = train(config, tmp_path / "whole", progress=False)
    # "kill" after 17 updates (last checkpoint at 14), then rerun the same command
    train(config, tmp_path / "killed", progress=False, stop_after_updates=17)
    killed_log = (tmp_path / "killed" / "metrics.jsonl").read_text()
    assert json.loads(killed_log.splitlines()[-1])["update"] == 15  # logged past the checkpoint
    resumed = train(config, tmp_path / "killed", progress=False)
    assert resumed.updates == whole.updates and resumed.episodes == whole.episodes >= 8
    for (name, a), b in zip(whole.agent.state_dict().items(), resumed.agent.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(whole.sampler.get_state(), resumed.sampler.get_state())
    assert _metrics_without_timings(tmp_path / "whole" / "metrics.jsonl") == \
        _metrics_without_timings(tmp_path / "killed" / "metrics.jsonl")


def test_rerun_changes_nothing_and_other_settings_are_refused(tmp_path):
    """Rerunning a finished run changes nothing, and other settings are refused."""
    config = tiny_config(episodes=4)
    train(config, tmp_path, progress=False)
    digest = hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest()
    train(config, tmp_path, progress=False)
    assert hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest() == digest
    with pytest.raises(ValueError, match="lr: saved 0.0007, given 0.001"):
        train(tiny_config(episodes=4, lr=1e-3), tmp_path, progress=False)


@pytest.mark.parametrize("task,columns", [
    ("two_step", "episode,trial,action,reward,state,common,good_state,value,rpe"),
    ("bandit_independent", "episode,trial,action,reward,p_0,p_1,value,rpe"),
    ("foraging", "episode,trial,block,action,reward,p_0,p_1,base_0,base_1,value,rpe"),
    ("reversal", "episode,trial,cue,big_cue,trials_since_reversal,action,reward,value_fixation,value_cue,rpe_cue"),
])
def test_eval_keeps_the_checkpoint_and_writes_its_outputs(tmp_path, task, columns):
    """eval leaves the checkpoint untouched and writes trials, metrics and figures."""
    run = tmp_path / "run"
    train(tiny_config(task=task, episodes=4), run, progress=False)
    digest = hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()
    metrics = evaluate(run, tmp_path / "eval", episodes=6, seed=1)
    assert hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest() == digest
    lines = (tmp_path / "eval" / "trials.csv").read_text().splitlines()
    assert lines[0] == columns
    assert len(lines) == 1 + 6 * 100
    assert lines[1].startswith("0,0,") and lines[-1].startswith("5,99,")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["episodes"] == 6
    for figure in metrics["figures"]:
        assert (tmp_path / "eval" / figure.split("/")[-1]).stat().st_size > 1000


def test_old_run_resumes_with_a_new_settings_default(tmp_path):
    """A run saved before a setting existed resumes with that setting's default."""
    # blocks 2-4: the option's default, which foraging's training default (geometric-5) is not
    config = tiny_config(task="foraging", episodes=4, task_options={"blocks": "2-4"})
    train(config, tmp_path, progress=False, stop_after_updates=1)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["reward_input"]  # a setting added after the run was made
    saved["task_options"] = {}  # so were foraging's --changeover and --blocks
    (tmp_path / "config.json").write_text(json.dumps(saved))
    train(config, tmp_path, progress=False)  # not refused
    saved["task_options"] = {"changeover": "withhold"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"task_options: saved \{'changeover': 'withhold', 'blocks': '2-4'\}, "
                                         r"given \{'changeover': 'none'"):
        train(config, tmp_path, progress=False)


@pytest.mark.parametrize("task", ["two_step", "bandit_independent", "foraging"])
def test_the_native_loop_trains_bit_for_bit_as_the_python_loop(monkeypatch, task):
    """Updates whose unrolls are RolloutPlan.run leave the weights, the buffers, the carried
    state and the task exactly as the Python step loop does (episode ends included)."""
    def trained(in_one_call):
        monkeypatch.setattr(rollout, "_steps_in_one_call", lambda *args: in_one_call)
        trainer = Trainer(tiny_config(task=task, num_envs=6, unroll=12))
        for _ in range(8):
            trainer.update()
        return trainer

    native, python = trained(True), trained(False)
    assert python.episodes > 0  # the unrolls crossed episode ends
    for a, b in zip(native.agent.parameters(), python.agent.parameters()):
        assert torch.equal(a, b)
    for name in ("all_inputs", "all_starts", "actions", "rewards"):
        assert torch.equal(getattr(native.buffer, name), getattr(python.buffer, name)), name
    assert torch.equal(native.buffer.bootstrap_value, python.buffer.bootstrap_value)
    for a, b in zip(native.carry.state_dict().values(), python.carry.state_dict().values()):
        assert torch.equal(a, b)
    native_task, python_task = native.task.state_dict(), python.task.state_dict()
    for name, value in native_task.items():
        assert torch.equal(value, python_task[name]) if isinstance(value, torch.Tensor) else value == python_task[name]


def test_a_task_returning_strided_tensors_trains_as_with_dense_ones(monkeypatch):
    """The native loop takes a task's strided observations, rewards and episode ends as the
    Python loop does (it makes them dense first), with the same bits."""
    def trained(strided):
        trainer = Trainer(tiny_config(task="two_step", num_envs=6, unroll=12))
        if strided:
            step = trainer.task.step

            def strided(x):  # the same values, every element a stride of 2 from the next
                return torch.stack([x, x], -1)[..., 0]

            def strided_step(actions):
                result = step(actions)
                return dataclasses.replace(result, obs=strided(result.obs), reward=strided(result.reward),
                                           done=strided(result.done))
            monkeypatch.setattr(trainer.task, "step", strided_step)
        for _ in range(8):
            trainer.update()
        return trainer

    strided, dense = trained(True), trained(False)
    assert not strided.task.step(torch.zeros(6, dtype=torch.long)).obs.is_contiguous()
    for a, b in zip(strided.agent.parameters(), dense.agent.parameters()):
        assert torch.equal(a, b)


def test_fast_rollout_is_one_native_loop_of_fused_steps(monkeypatch):
    """The fast core's unroll is one native call (RolloutPlan.run: every step's core step, heads
    and action sample fused, the task called back between them), plus the bootstrap step after
    it (RolloutPlan.next_state: the LSTM step alone); with the loop in Python (an agent run()
    cannot serve) it is one fused call per environment step."""
    calls = count_native_calls(monkeypatch)
    trainer = Trainer(tiny_config(core="fast"))
    trainer.collect()
    assert trainer.agent.backend == "cpp"
    assert calls == {"cell_heads": 0, "run": 1, "cell": 1}
    monkeypatch.setattr(rollout, "_steps_in_one_call", lambda *args: False)
    trainer.collect()
    assert calls == {"cell_heads": trainer.config.unroll, "run": 1, "cell": 2}
