"""One job: one seed of one simulation, trained and evaluated by the real commands in their own
processes (`python -m agent train`, then `python -m agent eval`), one torch thread each, so K
jobs side by side use K cores and a crash stays inside its job.

A finished run is reused (train would load it and stop at once; skipping it saves a process
start), an interrupted one is resumed by train from its checkpoint, and an evaluation is redone
only when its metrics.json is missing, older than the checkpoint, or of another episode count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.config import TrainConfig, resolve_config
from agent.infra.checkpoint import checkpoint_path, load_checkpoint
from agent.reproduce.simulations import Simulation

REPOSITORY = Path(__file__).resolve().parents[2]  # `python -m agent` resolves from here
STDERR_TAIL_LINES = 25
# One thread per process: parallelism comes from the jobs, and BLAS threads would oversubscribe.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Job:
    simulation: Simulation
    seed: int
    run_dir: Path
    train_episodes: int | None  # None: the task's default
    eval_episodes: int
    device: str

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"

    def train_config(self) -> TrainConfig:
        """The config the train command below resolves to (checked against a saved run first)."""
        overrides = self.simulation.train_overrides
        return resolve_config({**overrides, "task": self.simulation.task, "seed": self.seed, "threads": 1,
                               "device": self.device, "episodes": self.train_episodes or overrides.get("episodes")})

    def train_command(self) -> list[str]:
        command = [sys.executable, "-m", "agent", "train", "--task", self.simulation.task, "--seed", str(self.seed),
                   "--threads", "1", "--device", self.device, "--quiet", "--out", str(self.run_dir),
                   *self.simulation.train_flags()]
        return command + (["--episodes", str(self.train_episodes)] if self.train_episodes else [])

    def eval_command(self) -> list[str]:
        return [sys.executable, "-m", "agent", "eval", str(self.run_dir), "--episodes", str(self.eval_episodes),
                "--device", self.device, "--out", str(self.eval_dir)]


@dataclass
class JobResult:
    job: Job
    training: str = ""  # "reused", "trained" or "resumed from N episodes"
    evaluation: str = ""  # "reused" or "evaluated"
    train_wall_seconds: float | None = None  # None: no process ran this time
    eval_wall_seconds: float | None = None
    metrics: dict | None = None
    error: dict | None = field(default=None)  # stage, returncode, stderr_tail

    @property
    def ok(self) -> bool:
        return self.error is None and self.metrics is not None


def training_state(run_dir: Path) -> tuple[str, int]:
    """("new" | "interrupted" | "finished", episodes trained so far)."""
    if not checkpoint_path(run_dir).is_file():
        return "new", 0
    saved = load_checkpoint(run_dir)
    return ("finished" if saved.get("finished") else "interrupted"), int(saved["trainer"]["episodes"])


def evaluation_is_current(job: Job) -> bool:
    metrics_path = job.eval_dir / "metrics.json"
    if not metrics_path.is_file():
        return False
    if metrics_path.stat().st_mtime <= checkpoint_path(job.run_dir).stat().st_mtime:
        return False
    return json.loads(metrics_path.read_text()).get("episodes") == job.eval_episodes


def _run(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPOSITORY, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True)
    return done, time.perf_counter() - start


def _failure(stage: str, done: subprocess.CompletedProcess) -> dict:
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-STDERR_TAIL_LINES:])
    return {"stage": stage, "returncode": done.returncode, "stderr_tail": tail}


def run_job(job: Job) -> JobResult:
    """Train (unless finished) and evaluate (unless current); never raises for a failed process."""
    result = JobResult(job)
    try:
        state, episodes = training_state(job.run_dir)
        if state == "finished":
            result.training = "reused"
        else:
            result.training = f"resumed from {episodes} episodes" if state == "interrupted" else "trained"
            done, result.train_wall_seconds = _run(job.train_command())
            if done.returncode != 0:
                result.error = _failure("train", done)
                return result
        if evaluation_is_current(job):
            result.evaluation = "reused"
        else:
            result.evaluation = "evaluated"
            done, result.eval_wall_seconds = _run(job.eval_command())
            if done.returncode != 0:
                result.error = _failure("eval", done)
                return result
        result.metrics = json.loads((job.eval_dir / "metrics.json").read_text())
    except Exception as error:  # a broken run directory fails its job, not the whole command
        result.error = {"stage": "reproduce", "returncode": None, "stderr_tail": f"{type(error).__name__}: {error}"}
    return result


# ---- controls: classical learners on the same test episodes (agent baseline) -----------------

@dataclass(frozen=True)
class ControlJob:
    """One control of one simulation, played by `python -m agent baseline` on eval's test
    episodes (eval's default seed, the simulation's episode count)."""
    simulation: Simulation
    strategy: str
    out_dir: Path
    eval_episodes: int

    def command(self) -> list[str]:
        from agent.commands.evaluate import DEFAULT_TEST_SEED

        return [sys.executable, "-m", "agent", "baseline", "--task", self.simulation.task, "--strategy",
                self.strategy, "--episodes", str(self.eval_episodes), "--seed", str(DEFAULT_TEST_SEED),
                "--out", str(self.out_dir)]


@dataclass
class ControlResult:
    job: ControlJob
    wall_seconds: float | None = None
    metrics: dict | None = None
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.metrics is not None


def run_control_job(job: ControlJob) -> ControlResult:
    """Play the control (always anew: a few seconds, and the analysis may have changed since);
    never raises for a failed process."""
    result = ControlResult(job)
    try:
        done, result.wall_seconds = _run(job.command())
        if done.returncode != 0:
            result.error = _failure("baseline", done)
            return result
        result.metrics = json.loads((job.out_dir / "metrics.json").read_text())
    except Exception as error:
        result.error = {"stage": "reproduce", "returncode": None, "stderr_tail": f"{type(error).__name__}: {error}"}
    return result
