"""Checkpoint files: written atomically (temp file + rename), so a run killed mid-write keeps
its previous checkpoint intact."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_NAME


def save_checkpoint(run_dir, payload: dict) -> Path:
    path = checkpoint_path(run_dir)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir, map_location="cpu") -> dict:
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"RUN_DIR: no checkpoint at {path} (train a run there first)")
    return torch.load(path, map_location=map_location, weights_only=False)
