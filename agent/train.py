"""`python -m agent train`: the training loop around Trainer, with progress, metrics log,
periodic and final checkpoints, and resume.

Resume: rerunning the same command with the same --out continues from the last checkpoint.
The checkpoint holds the whole Trainer state (weights, optimizer, task tensors and generator,
sampler generator, the agent's carried state), so the resumed run is the uninterrupted run.
Metric lines logged after that checkpoint (by the killed process) are dropped and rewritten.

Under torchrun (distributed.py) every rank runs this loop; rank 0 alone reads and writes the
run directory. A checkpoint then also holds every rank's environments, sampler and carry
("rank_states", gathered to rank 0; on resume each rank takes its own) and the world size,
which a resume must match.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from agent.checkpoint import (checkpoint_path, load_checkpoint, quantiles_reached, save_checkpoint,
                              save_quantile_snapshots)
from agent.config import TrainConfig, saved_config_differences
from agent.distributed import SINGLE, World, first_rank_decides, gather_to_first
from agent.tensorboard_log import TensorBoardLog
from agent.trainer import Trainer

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
        check_world_size(saved, Path(out_dir), world.size)
        return saved
    return first_rank_decides(world, decide)


def _save(out_dir: Path, trainer: Trainer, config: TrainConfig, world: World, finished: bool) -> None:
    rank_states = gather_to_first(trainer.rank_state(), world) if world.distributed else None  # every rank joins
    if not world.first:
        return
    payload = {"trainer": trainer.state_dict(), "config": config.to_dict(), "finished": finished,
               "world_size": world.size}
    if rank_states is not None:
        payload["rank_states"] = rank_states
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
    (distributed.process_group); SINGLE is the single-process run."""
    out_dir = Path(out_dir)
    saved = check_resume(config, out_dir, world)
    if world.first:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
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
    steps_per_trial = type(trainer.task).steps_per_trial
    calls = 0
    snapshots_checked = -1  # tenths of training whose snapshots exist (-1: not yet looked, e.g. after a resume)
    with open(metrics_path if world.first else os.devnull, "a") as log:  # only rank 0 logs
        while trainer.episodes < config.episodes:
            start = time.perf_counter()
            stats = trainer.update()
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
            if stop_after_updates is not None and calls >= stop_after_updates:
                bar.close()
                if board is not None:
                    board.close()
                return trainer
    bar.close()
    if board is not None:
        board.close()
    _save(out_dir, trainer, config, world, finished=True)
    return trainer
