"""`python -m agent train`: the training loop around Trainer, with progress, metrics log,
periodic and final checkpoints, and resume.

Resume: rerunning the same command with the same --out continues from the last checkpoint.
The checkpoint holds the whole Trainer state (weights, optimizer, task tensors and generator,
sampler generator, the agent's carried state), so the resumed run is the uninterrupted run.
Metric lines logged after that checkpoint (by the killed process) are dropped and rewritten.

One process at a time trains a run directory: train() holds RUN_DIR/.lock (run_lock.py) from
before it reads the checkpoint until it returns, and a second process on the same --out is
refused at once, naming the holder.

Training never saves garbage: every update checks its loss, gradient and new weights for NaN
and infinity (Trainer.update), and the first non-finite one stops training with
TrainingDiverged naming that update, before it is logged or saved; the run directory keeps its
last checkpoint, which was finite.

Under torchrun (distributed.py) every rank runs this loop; rank 0 alone reads and writes the
run directory, and alone holds its lock. A checkpoint then also holds every rank's
environments, sampler and carry ("rank_states", gathered to rank 0; on resume each rank takes
its own) and the world size, which a resume must match.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from agent.core.config import TrainConfig, saved_config_differences
from agent.core.trainer import Trainer, TrainingDiverged
from agent.infra.checkpoint import (check_finite_weights, checkpoint_path, load_checkpoint, quantiles_reached,
                                    save_checkpoint, save_quantile_snapshots)
from agent.infra.distributed import SINGLE, World, first_rank_decides, gather_to_first
from agent.infra.run_lock import acquire_run_lock
from agent.infra.tensorboard_log import TensorBoardLog

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"


def check_run_dir(config: TrainConfig, out_dir: Path) -> None:
    """Refuse (before any work) an out_dir that is a file, or that holds a run started with other settings."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: is a file, expected a run directory (new or one to resume)")
    path = out_dir / CONFIG_NAME
    if not path.is_file():
        return
    different = saved_config_differences(json.loads(path.read_text()), config)
    if different:
        raise ValueError(f"--out {out_dir} holds a run with other settings ({'; '.join(different)}); "
                         "use another --out or the same options to resume it")


def saved_world_size(checkpoint: dict) -> int:
    return checkpoint.get("world_size", 1)  # checkpoints written before distributed training: one process


def check_world_size(checkpoint: dict, out_dir: Path, world_size: int) -> None:
    """Refuse to resume a run with another number of processes: its per-rank environments,
    samplers and batch split would not continue the saved run."""
    saved = saved_world_size(checkpoint)
    if saved != world_size:
        raise ValueError(f"--out {out_dir} holds a run trained with world size {saved}, resumed with world size "
                         f"{world_size}; resume it with {saved} process(es) (torchrun --nproc_per_node x nodes) "
                         "or use another --out")


def check_resume(config: TrainConfig, out_dir, world: World = SINGLE) -> dict | None:
    """check_run_dir, then the checkpoint to resume (None for a new run) after checking its world
    size; decided by rank 0 and given to every rank (first_rank_decides)."""
    def decide():
        check_run_dir(config, Path(out_dir))
        if not checkpoint_path(out_dir).is_file():
            return None
        # Objects sent between ranks travel on the CPU; each rank moves what it takes.
        saved = load_checkpoint(out_dir, map_location="cpu" if world.distributed else config.device)
        # A run saved before training checked every update may hold NaN weights: resuming them
        # would fail at the first update, so it is named here, before any work.
        check_finite_weights(saved["trainer"]["agent"], checkpoint_path(out_dir))
        check_world_size(saved, Path(out_dir), world.size)
        return saved
    return first_rank_decides(world, decide)


@contextmanager
def _first_rank_holds_lock(config: TrainConfig, out_dir: Path, world: World):
    """Rank 0, the only writer of out_dir, holds its lock until the block ends; a lock held by
    another process stops every rank before any work (first_rank_decides gives rank 0's refusal
    to all). The other ranks take none: out_dir may exist on rank 0's node only."""
    held = []  # filled by rank 0; not returned by decide, which would send the lock to every rank

    def lock():
        check_run_dir(config, out_dir)  # a file at out_dir is named before the lock's mkdir fails on it
        held.append(acquire_run_lock(out_dir))

    first_rank_decides(world, lock)
    try:
        yield
    finally:
        for run_lock in held:
            run_lock.release()


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and a rename: a process checking the run's settings before it
    asks for the lock (cli.cmd_train) never reads a half-written config.json."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _divergence_advice(config: TrainConfig, out_dir: Path, last_checkpoint: int | None) -> str:
    """What the run directory keeps after TrainingDiverged, and what to do next: one clause of its
    one-line message. A resume must use the saved settings (check_run_dir), and the same settings
    replay the same updates, so the way on is a lower learning rate in a new run directory."""
    retry = (f"to train past it, start again in a new --out (or delete {out_dir}) with a lower --lr "
             f"(this run: {config.lr:g}) or a --max-grad-norm")
    if last_checkpoint is None:
        return f"no checkpoint was written before it (the first comes at update {config.checkpoint_every}); {retry}"
    return (f"{checkpoint_path(out_dir)} keeps the last finite state (update {last_checkpoint}), which "
            f"`python -m agent eval {out_dir} --out EVAL_DIR` can use; rerunning this command resumes from it "
            f"with the same settings and would diverge again; {retry}")


def _save(out_dir: Path, trainer: Trainer, config: TrainConfig, world: World, finished: bool) -> None:
    rank_states = gather_to_first(trainer.rank_state(), world) if world.distributed else None  # every rank joins
    if not world.first:
        return
    payload = {"trainer": trainer.state_dict(), "config": config.to_dict(), "finished": finished,
               "world_size": world.size}
    if rank_states is not None:
        payload["rank_states"] = rank_states
        payload["all_reduce"] = world.all_reduce_name  # what summed the gradients (shm_allreduce.py)
    save_checkpoint(out_dir, payload)


def _truncate_metrics(path: Path, last_update: int) -> None:
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["update"] <= last_update]
    path.write_text("".join(line + "\n" for line in kept))


def train(config: TrainConfig, out_dir, *, progress: bool = True, stop_after_updates: int | None = None,
          trainer: Trainer | None = None, tensorboard: bool = False, world: World = SINGLE) -> Trainer:
    """Train (or resume) the run in out_dir. stop_after_updates simulates a kill after that many
    updates in this call (no final checkpoint), for the resume test. tensorboard: also write the
    metrics as TensorBoard events (tensorboard_log.py). world: this process's rank under torchrun
    (distributed.process_group); SINGLE is the single-process run.

    Raises RunLockedError (before any work) when another process holds out_dir's lock, and
    TrainingDiverged when an update's loss, gradient or weights are not finite (out_dir keeps its
    last, finite checkpoint)."""
    out_dir = Path(out_dir)
    with _first_rank_holds_lock(config, out_dir, world):
        return _train_holding_lock(config, out_dir, progress=progress, stop_after_updates=stop_after_updates,
                                   trainer=trainer, tensorboard=tensorboard, world=world)


def _train_holding_lock(config: TrainConfig, out_dir: Path, *, progress: bool, stop_after_updates: int | None,
                        trainer: Trainer | None, tensorboard: bool, world: World) -> Trainer:
    saved = check_resume(config, out_dir, world)  # read under the lock: no other process writes it now
    if world.first:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(out_dir / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")
    torch.set_num_threads(config.threads)
    trainer = trainer or Trainer(config, world=world)
    if world.first:
        trainer.task.write_run_files(out_dir)
    if saved is not None:
        trainer.load_state_dict(saved["trainer"])
        if world.distributed:
            trainer.load_rank_state(saved["rank_states"][world.rank])
        if saved.get("finished"):
            if progress and world.first:
                print(f"{out_dir}: training already finished ({trainer.episodes} episodes)")
            return trainer
    metrics_path = out_dir / METRICS_NAME
    if world.first:
        _truncate_metrics(metrics_path, trainer.updates)
    board = TensorBoardLog(out_dir, config.to_dict(), trainer.updates) if tensorboard and world.first else None

    bar = tqdm(total=config.episodes, initial=min(trainer.episodes, config.episodes), unit="ep",
               disable=not progress or not world.first, dynamic_ncols=True, desc=config.task)
    try:
        finished = _update_until_done(config, out_dir, trainer, world, bar, board, stop_after_updates,
                                      last_checkpoint=trainer.updates if saved is not None else None)
    finally:  # also when training diverged: the bar ends its line, the events file is flushed
        bar.close()
        if board is not None:
            board.close()
    if finished:
        _save(out_dir, trainer, config, world, finished=True)
    return trainer


def _update_until_done(config: TrainConfig, out_dir: Path, trainer: Trainer, world: World, bar, board,
                       stop_after_updates: int | None, last_checkpoint: int | None) -> bool:
    """The training loop: update, log, snapshot, checkpoint, until the episodes are done (True)
    or stop_after_updates (False). last_checkpoint: the update of the checkpoint on disk (None:
    none yet), named when an update diverges."""
    metrics_path = out_dir / METRICS_NAME
    steps_per_trial = type(trainer.task).steps_per_trial
    calls = 0
    snapshots_checked = -1  # tenths of training whose snapshots exist (-1: not yet looked, e.g. after a resume)
    with open(metrics_path if world.first else os.devnull, "a") as log:  # only rank 0 logs
        while trainer.episodes < config.episodes:
            start = time.perf_counter()
            try:
                stats = trainer.update()
            except TrainingDiverged as error:  # nothing of this update was logged or saved
                raise TrainingDiverged(error.update, error.reason,
                                       _divergence_advice(config, out_dir, last_checkpoint)) from None
            elapsed = time.perf_counter() - start
            trainer.train_seconds += elapsed
            calls += 1
            # The window lives in the trainer, so it is checkpointed: a resumed run logs the same lines.
            window = trainer.log_window
            window["reward"] += stats["reward"]
            window["steps"] += config.unroll * config.num_envs * world.size  # the world's steps
            window["seconds"] += elapsed
            bar.update(min(trainer.episodes, config.episodes) - bar.n)
            if trainer.updates % config.log_every == 0:
                line = {
                    "update": trainer.updates, "episodes": trainer.episodes, "env_steps": trainer.env_steps,
                    "reward_per_trial": window["reward"] * steps_per_trial / window["steps"],
                    "steps_per_second": window["steps"] / max(window["seconds"], 1e-9),
                    "train_seconds": trainer.train_seconds,
                    **{k: stats[k] for k in ("loss", "policy_loss", "value_loss", "entropy")},
                }
                log.write(json.dumps(line) + "\n")
                log.flush()
                if board is not None:
                    board.write(line)
                bar.set_postfix(reward_per_trial=f"{line['reward_per_trial']:.3f}",
                                steps_s=f"{line['steps_per_second']:.0f}")
                trainer.log_window = {"reward": 0.0, "steps": 0, "seconds": 0.0}
            # The snapshot files are looked at only when a new tenth is reached, not every update.
            if world.first and quantiles_reached(trainer.episodes, config.episodes) > snapshots_checked:
                save_quantile_snapshots(out_dir, trainer.agent, trainer.episodes, config.episodes)
                snapshots_checked = quantiles_reached(trainer.episodes, config.episodes)
            if trainer.updates % config.checkpoint_every == 0:
                _save(out_dir, trainer, config, world, finished=False)
                last_checkpoint = trainer.updates
            if stop_after_updates is not None and calls >= stop_after_updates:
                return False
    return True
