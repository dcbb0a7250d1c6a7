"""Checkpoint files: written atomically (temp file + rename), so a run killed mid-write keeps
its previous checkpoint intact; the one before the last is kept too (checkpoint.prev.pt), for
a last file damaged after it was written. Files are read with weights_only=True: people share
trained agents, and loading one must not run code from it (a checkpoint holds only tensors,
numbers, strings and containers of them). A damaged file gets a one-line CheckpointError that
names it and says what to do.

Besides the resumable checkpoint, training keeps the agent's weights at each tenth of its
episodes (RUN_DIR/quantiles/q01.pt .. q10.pt), so eval can show how the behaviour grew
(Harlow's Fig. 6c: accuracy by trial per training quantile)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
QUANTILES_DIR = "quantiles"
QUANTILES = 10


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_NAME


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the message is one line for the command line."""


def save_checkpoint(run_dir, payload: dict) -> Path:
    path = checkpoint_path(run_dir)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    if path.is_file():
        previous = path.with_name(PREVIOUS_NAME)
        previous.unlink(missing_ok=True)
        os.link(path, previous)  # a second name for the last good file, no copy
    os.replace(tmp, path)
    return path


def read_file(path: Path, map_location="cpu") -> dict:
    """torch.load(path) with weights_only=True, or a CheckpointError naming the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... by damage
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        previous = path.with_name(PREVIOUS_NAME)
        advice = (f"move {previous} over it to resume from the checkpoint before, or delete the run directory "
                  "to train from the start") if path.name == CHECKPOINT_NAME and previous.is_file() else \
            "delete it (or the run directory) and train again"
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason}); {advice}") from None


def nonfinite_tensors(state: dict) -> list[str]:
    """The names of the floating-point tensors in a state dict that hold a NaN or an infinity."""
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite_weights(weights: dict, path: Path) -> None:
    """Refuse (CheckpointError) the agent weights saved in `path` if any is NaN or infinite: a run
    that diverged before training checked every update. Playing or resuming them would only give
    NaN logits, so meaningless trials or a run that can never recover."""
    bad = nonfinite_tensors(weights)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{path}: the weights hold NaN or infinite values ({shown}): the run diverged; "
                              "train it again in a new --out with a lower --lr (or a --max-grad-norm)")


def load_checkpoint(run_dir, map_location="cpu") -> dict:
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"RUN_DIR: no checkpoint at {path} (train a run there first)")
    return read_file(path, map_location)


def quantile_path(run_dir, quantile: int) -> Path:
    return Path(run_dir) / QUANTILES_DIR / f"q{quantile:02d}.pt"


def quantiles_reached(episodes: int, total_episodes: int) -> int:
    """How many tenths of training `episodes` completes."""
    return min(QUANTILES, QUANTILES * episodes // total_episodes)


def save_quantile_snapshots(run_dir, agent, episodes: int, total_episodes: int) -> None:
    """Write the weights for every tenth of training that `episodes` has reached and that has no
    snapshot yet (a resumed run writes the ones its killed predecessor did not)."""
    for quantile in range(1, quantiles_reached(episodes, total_episodes) + 1):
        path = quantile_path(run_dir, quantile)
        if path.is_file():
            continue
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        torch.save({"agent": agent.state_dict(), "episodes": episodes, "quantile": quantile}, tmp)
        os.replace(tmp, path)


def load_quantile_snapshots(run_dir, map_location="cpu") -> dict[int, dict]:
    """quantile -> snapshot, for the snapshots the run has."""
    snapshots = {}
    for quantile in range(1, QUANTILES + 1):
        path = quantile_path(run_dir, quantile)
        if path.is_file():
            snapshots[quantile] = read_file(path, map_location)
    return snapshots
