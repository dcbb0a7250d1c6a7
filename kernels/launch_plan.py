"""Grid shape and numeric precision for a launch: how a configuration meets a batch size.

The configuration (kernels/config.py) depends on H, R and dtype only. The batch size decides
only how many CTA groups run side by side, which needs no compilation:

- n_split, the CTAs per group that share one step, is the number of tiles when the weight
  slice is resident (one tile per CTA) and otherwise min(tiles, SMs); it is 1 without grid
  sync (the Triton interpreter runs programs one after another, and FASTRNN_TRITON_GRID_SYNC=0
  turns it off on a GPU shared with other work).
- n_groups = min(batch tiles, SMs // n_split), so the whole grid is at most one CTA per SM
  and every member of a group is resident while it waits at the group barrier. Groups loop
  over the remaining batch tiles.
"""

from __future__ import annotations

import functools
import os

import torch

from .config import SequenceConfig

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def grid_sync_enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("FASTRNN_TRITON_GRID_SYNC", "1") != "0"


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def resident_ctas(device: torch.device) -> int:
    """CTAs that are surely resident at once: one per SM (the configs fit one per SM)."""
    if device.type != "cuda":
        return 1
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def sequence_grid(config: SequenceConfig, batch: int, split_dim: int, device: torch.device) -> tuple[int, int]:
    """(n_groups, n_split) for a sequence kernel whose tiles cover split_dim columns."""
    tiles = cdiv(split_dim, config.block_h)
    capacity = resident_ctas(device)
    if not grid_sync_enabled(device):
        n_split = 1
    elif config.resident:
        n_split = tiles
    else:
        n_split = min(tiles, capacity)
    if config.resident and n_split < tiles:
        raise AssertionError(f"a resident config needs one CTA per tile ({tiles}), got {n_split}")
    n_groups = max(1, min(cdiv(batch, config.block_b), capacity // n_split))
    return n_groups, n_split


def cooperative_launch(grid: tuple[int, int], device: torch.device) -> dict:
    """Launch options for a sequence kernel: cooperative whenever CTAs meet at a group barrier.

    A cooperative launch makes the driver refuse a grid whose CTAs cannot all be resident at
    once (CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE) instead of letting the barrier spin forever:
    another persistent kernel on another stream, MPS limits or NCCL kernels holding SMs.
    """
    if device.type != "cuda" or grid[1] <= 1:
        return {}
    return {"launch_cooperative_grid": True}


def _tf32_allowed(sequence: bool, backends=torch.backends) -> bool:
    """Whether torch would run this float32 GEMM on TF32 tensor cores, without touching CUDA.

    Once a user sets the fp32_precision API, reading the legacy allow_tf32 flags raises, so
    that API is read first: the operation's setting (cuDNN RNN for a sequence, cuBLAS matmul
    for a step), where it is "none" the CUDA backend's (torch.backends.cudnn.fp32_precision),
    then the global one, the order torch resolves it in; "none" throughout means no TF32.
    Torches without it have the legacy flags only.
    """
    if not hasattr(backends, "fp32_precision"):
        return backends.cudnn.allow_tf32 if sequence else backends.cuda.matmul.allow_tf32
    operation = getattr(backends.cudnn, "rnn", None) if sequence else backends.cuda.matmul
    for level in (operation, backends.cudnn, backends):
        setting = getattr(level, "fp32_precision", "none") if level is not None else "none"
        if setting != "none":
            return setting == "tf32"
    return False


def precision(dtype: torch.dtype, device: torch.device, sequence: bool) -> str:
    """tl.dot input precision for float32: TF32 exactly when torch would use it here.

    A drop-in for nn.LSTM follows cuDNN's RNN setting (TF32 by default); for nn.LSTMCell,
    whose GEMMs are cuBLAS matmuls, the matmul setting (IEEE by default). 16-bit inputs
    always run on tensor cores with float32 accumulation.
    """
    if dtype != torch.float32 or device.type != "cuda":
        return "ieee"
    return "tf32" if _tf32_allowed(sequence) else "ieee"
