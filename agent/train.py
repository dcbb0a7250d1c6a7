"""`python -m agent train`: the training loop around Trainer, with progress, metrics log,
periodic and final checkpoints, and resume.

Resume: rerunning the same command with the same --out continues from the last checkpoint.
The checkpoint holds the whole Trainer state (weights, optimizer, task tensors and generator,
sampler generator, the agent's carried state), so the resumed run is the uninterrupted run.
Metric lines logged after that checkpoint (by the killed process) are dropped and rewritten.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from agent.checkpoint import (checkpoint_path, load_checkpoint, quantiles_reached, save_checkpoint,
                              save_quantile_snapshots)
from agent.config import TrainConfig, saved_config_differences
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


def _truncate_metrics(path: Path, last_update: int) -> None:
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["update"] <= last_update]
    path.write_text("".join(line + "\n" for line in kept))


def train(config: TrainConfig, out_dir, *, progress: bool = True, stop_after_updates: int | None = None,
          trainer: Trainer | None = None, tensorboard: bool = False) -> Trainer:
    """Train (or resume) the run in out_dir. stop_after_updates simulates a kill after that many
    updates in this call (no final checkpoint), for the resume test. tensorboard: also write the
    metrics as TensorBoard events (tensorboard_log.py)."""
    out_dir = Path(out_dir)
    check_run_dir(config, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    torch.set_num_threads(config.threads)
    trainer = trainer or Trainer(config)
    trainer.task.write_run_files(out_dir)
    if checkpoint_path(out_dir).is_file():
        saved = load_checkpoint(out_dir, map_location=config.device)
        trainer.load_state_dict(saved["trainer"])
        if saved.get("finished"):
            if progress:
                print(f"{out_dir}: training already finished ({trainer.episodes} episodes)")
            return trainer
    metrics_path = out_dir / METRICS_NAME
    _truncate_metrics(metrics_path, trainer.updates)
    board = TensorBoardLog(out_dir, config.to_dict(), trainer.updates) if tensorboard else None

    bar = tqdm(total=config.episodes, initial=min(trainer.episodes, config.episodes), unit="ep",
               disable=not progress, dynamic_ncols=True, desc=config.task)
    steps_per_trial = type(trainer.task).steps_per_trial
    calls = 0
    snapshots_checked = -1  # tenths of training whose snapshots exist (-1: not yet looked, e.g. after a resume)
    with open(metrics_path, "a") as log:
        while trainer.episodes < config.episodes:
            start = time.perf_counter()
            stats = trainer.update()
            elapsed = time.perf_counter() - start
            trainer.train_seconds += elapsed
            calls += 1
            # The window lives in the trainer, so it is checkpointed: a resumed run logs the same lines.
            window = trainer.log_window
            window["reward"] += stats["reward"]
            window["steps"] += config.unroll * config.num_envs
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
            if quantiles_reached(trainer.episodes, config.episodes) > snapshots_checked:
                save_quantile_snapshots(out_dir, trainer.agent, trainer.episodes, config.episodes)
                snapshots_checked = quantiles_reached(trainer.episodes, config.episodes)
            if trainer.updates % config.checkpoint_every == 0:
                save_checkpoint(out_dir, {"trainer": trainer.state_dict(), "config": config.to_dict(),
                                          "finished": False})
            if stop_after_updates is not None and calls >= stop_after_updates:
                bar.close()
                if board is not None:
                    board.close()
                return trainer
    bar.close()
    if board is not None:
        board.close()
    save_checkpoint(out_dir, {"trainer": trainer.state_dict(), "config": config.to_dict(), "finished": True})
    return trainer
