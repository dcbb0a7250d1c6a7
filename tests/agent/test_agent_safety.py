"""Training never saves garbage, and one process at a time trains a run directory:
non-finite settings are refused before any work, a non-finite loss, gradient or weight stops
training at its update and keeps the last finite checkpoint, eval and resume refuse NaN weights,
and RUN_DIR/.lock refuses a second process naming the holder, without outliving a killed one."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import agent.commands.train as train_module
from agent.cli import main
from agent.commands.train import check_resume, train
from agent.core.config import float_settings, resolve_config
from agent.core.optimizer import FlatOptimizer
from agent.core.trainer import Trainer, TrainingDiverged
from agent.infra.checkpoint import CheckpointError, load_checkpoint, nonfinite_tensors, save_checkpoint
from agent.infra.flags import flag_name
from agent.infra.run_lock import RunLockedError, acquire_run_lock
from lock_holder import start_lock_holder

REPO = Path(__file__).resolve().parents[2]
DIVERGING_UPDATE, CHECKPOINT_EVERY = 5, 3  # the last checkpoint before update 5 is update 3's


def tiny_config(**overrides):
    values = {"task": "two_step", "num_envs": 4, "unroll": 10, "episodes": 1000, "checkpoint_every": CHECKPOINT_EVERY,
              "log_every": 1, **overrides}
    return resolve_config(values)


# --- non-finite settings -------------------------------------------------------------------------

@pytest.mark.parametrize("name,value", [(name, "nan") for name in float_settings()]
                         + [("lr", "inf"), ("gamma", "-inf"), ("max_grad_norm", "inf")])
def test_a_non_finite_setting_is_refused_naming_its_option_before_any_work(name, value, capsys, tmp_path,
                                                                           monkeypatch):
    """Every float setting refuses NaN and infinity (NaN fails no `<` check, so it used to train a
    run of NaN weights): exit 2, one error line naming the option, and no run directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "two_step", f"{flag_name(name)}={value}", "--out", "R"])  # = lets "-inf" through
    assert exit_info.value.code == 2
    assert f"error: {flag_name(name)} must be a finite number, got {float(value)}" in capsys.readouterr().err
    assert not (tmp_path / "R").exists()


# --- a non-finite update -------------------------------------------------------------------------

def _nan_loss_at(update: int, monkeypatch) -> None:
    """Trainer.learn returns a NaN total loss at that update (1-based)."""
    original = Trainer.learn

    def learn(self):
        parts, hidden = original(self)
        if self.updates + 1 == update:
            parts = [math.nan, *parts[1:]]
        return parts, hidden
    monkeypatch.setattr(Trainer, "learn", learn)


def _nan_gradient_at(update: int, monkeypatch) -> None:
    """The optimizer finds a NaN in one gradient value at that update (the loss stays finite)."""
    original = FlatOptimizer.step

    def step(self):
        if int(self.step_count) + 1 == update:
            grad = self.params[0].grad
            grad[(0,) * grad.dim()] = math.nan
        original(self)
    monkeypatch.setattr(FlatOptimizer, "step", step)


def _overflowing_step_at(update: int, monkeypatch) -> None:
    """The learning rate jumps to 3e38 for that update: RMSProp moves a weight by lr x g / sqrt(v),
    and g / sqrt(v) exceeds 1.14 for some weight (v is a running mean of g^2), so that weight
    passes float32's 3.4e38 and becomes infinite from a finite loss and gradient, by the
    optimizer's own arithmetic."""
    original = FlatOptimizer.step

    def step(self):
        if int(self.step_count) + 1 == update:
            self.hyper["lr"] = 3e38
        original(self)
    monkeypatch.setattr(FlatOptimizer, "step", step)


@pytest.mark.parametrize("inject,reason", [
    (_nan_loss_at, "the loss is nan"),
    (_nan_gradient_at, "the gradient holds NaN or infinite values"),
    (_overflowing_step_at, "the optimizer step made weights NaN or infinite"),
])
def test_non_finite_update_stops_and_keeps_the_finite_checkpoint(inject, reason, tmp_path, monkeypatch):
    """A non-finite update stops training, naming it, and keeps the last finite checkpoint.

    A NaN loss, a NaN gradient or an overflowing step at update 5 raises TrainingDiverged naming
    update 5 and the reason, logs nothing of update 5, and leaves update 3's checkpoint as the
    run's: loadable, finite, and resumable (the lock is released too)."""
    inject(DIVERGING_UPDATE, monkeypatch)
    with pytest.raises(TrainingDiverged) as error:
        train(tiny_config(), tmp_path, progress=False)
    message = str(error.value)
    assert error.value.update == DIVERGING_UPDATE and "\n" not in message
    assert message.startswith(f"training stopped at update {DIVERGING_UPDATE}: {reason}")
    assert f"keeps the last finite state (update {CHECKPOINT_EVERY})" in message and "--lr" in message
    saved = load_checkpoint(tmp_path)
    assert saved["trainer"]["updates"] == CHECKPOINT_EVERY and not saved["finished"]
    assert nonfinite_tensors(saved["trainer"]["agent"]) == []
    assert all(torch.isfinite(buffer).all() for state in saved["trainer"]["optimizer"]["state"].values()
               for buffer in state.values())
    logged = [json.loads(line)["update"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, DIVERGING_UPDATE))
    assert check_resume(tiny_config(), tmp_path)["trainer"]["updates"] == CHECKPOINT_EVERY
    acquire_run_lock(tmp_path).release()  # free again


def test_divergence_before_any_checkpoint_exits_1_in_one_line(tmp_path, capsys):
    """A run that diverges before its first checkpoint exits 1 with one line and no checkpoint.

    A learning rate of 1e38 overflows the weights at update 1 (no injection: the real update):
    the command exits 1 with one line naming update 1 and --lr, and writes no checkpoint."""
    run = tmp_path / "R"
    assert main(["train", "--task", "two_step", "--lr", "1e38", "--episodes", "64", "--num-envs", "4",
                 "--quiet", "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: training stopped at update 1: ") and "\n" not in err
    assert "no checkpoint was written before it" in err and "lower --lr (this run: 1e+38)" in err
    assert not (run / "checkpoint.pt").exists() and not (run / "quantiles").exists()


def _poison(run: Path) -> None:
    """Write run's checkpoint again with one weight NaN, as an unchecked diverged run left it."""
    saved = load_checkpoint(run)
    name = next(iter(saved["trainer"]["agent"]))
    saved["trainer"]["agent"][name].view(-1)[0] = math.nan
    save_checkpoint(run, saved)


def test_eval_and_resume_refuse_a_checkpoint_with_nan_weights(tmp_path, capsys):
    """eval exits 1 with one line naming the checkpoint and the NaN weights, writing nothing, and
    training refuses to resume such a run (it would fail at its first update)."""
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    config = tiny_config(episodes=4)
    train(config, run, progress=False, stop_after_updates=CHECKPOINT_EVERY)
    _poison(run)
    assert main(["eval", str(run), "--episodes", "2", "--out", str(evaluation)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {run / 'checkpoint.pt'}: the weights hold NaN or infinite values")
    assert "\n" not in err
    assert not evaluation.exists()
    with pytest.raises(CheckpointError, match="the run diverged"):
        train(config, run, progress=False)


# --- one writer per run --------------------------------------------------------------------------

@pytest.mark.slow
def test_second_process_is_refused_and_a_killed_holder_frees_it(tmp_path, capsys, monkeypatch):
    """A second process is refused at once, naming the holder, and a SIGKILLed holder leaves no lock.

    While another process holds the run's lock, train exits 1 with one line naming the holder's
    pid, before building a Trainer or writing anything; after the holder is killed with SIGKILL
    the kernel has released the lock and the same command trains."""
    run = tmp_path / "R"
    argv = ["train", "--task", "two_step", "--episodes", "4", "--num-envs", "4", "--quiet", "--out", str(run)]
    holder = start_lock_holder(run)
    try:
        monkeypatch.setattr(train_module, "Trainer", None)  # any training work would fail loudly
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {run}: the run is being trained by process {holder.pid} on ")
        assert "\n" not in err
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    monkeypatch.undo()
    assert main(argv) == 0
    assert load_checkpoint(run)["finished"]


@pytest.mark.slow
def test_running_train_holds_the_lock_against_a_second_process(tmp_path, monkeypatch):
    """A running train holds the lock, and the same command in a second process exits 1.

    The same `python -m agent train` started while a training (here, this process) runs on its
    --out exits 1 with one line naming this process's pid, and leaves the run to its holder."""
    run = tmp_path / "R"
    argv = ["train", "--task", "two_step", "--episodes", "8", "--num-envs", "4", "--unroll", "10", "--quiet",
            "--out", str(run)]
    second_runs = []
    original = Trainer.update

    def update(self):
        if self.updates == 1:  # mid-training, between two updates of this process
            second_runs.append(subprocess.run([sys.executable, "-m", "agent", *argv], cwd=REPO, capture_output=True,
                                              text=True, timeout=120))
        return original(self)
    monkeypatch.setattr(Trainer, "update", update)
    assert main(argv) == 0
    second, = second_runs
    assert second.returncode == 1
    assert second.stderr.strip().startswith(f"error: --out {run}: the run is being trained by process {os.getpid()}")
    assert len(second.stderr.strip().splitlines()) == 1 and second.stdout == ""
    assert load_checkpoint(run)["finished"]


def test_lock_is_refused_within_one_process_and_free_after_release(tmp_path):
    """A lock is refused to a second holder in the same process, and is free after release.

    flock belongs to the open file, so two train() calls in one process (threads) exclude each
    other too; release() frees the lock at once."""
    lock = acquire_run_lock(tmp_path)
    with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
        acquire_run_lock(tmp_path)
    lock.release()
    acquire_run_lock(tmp_path).release()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("buffer", ["flat_grad", "flat"])
def test_finite_check_sees_one_bad_value_in_either_buffer(buffer, value):
    """The optimizer's finite check sees one bad value anywhere in either flat buffer.

    finite_after_step reads each buffer's largest magnitude: NaN, +inf or -inf in a single
    element, first or last, is reported for that buffer alone."""
    parameters = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    optimizer = FlatOptimizer(parameters)
    assert optimizer.finite_after_step() == (True, True)
    for position in (0, -1):
        flat = getattr(optimizer, buffer)
        saved = flat[position].item()
        flat[position] = value
        assert optimizer.finite_after_step() == ((buffer != "flat_grad"), (buffer != "flat"))
        flat[position] = saved
