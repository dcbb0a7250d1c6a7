"""write_next_input: a meta-RL agent's input row for the step after an environment step (Wang et
al. 2018; Duan et al. 2016), [observation, one-hot previous action, previous reward (or other
signals)], with zeros after the observation in rows that start a new episode, written in one
native call (csrc/rl_inputs.cpp) into a row of the rollout's input buffer.

At an agent's sizes the same row from torch ops (index the one-hot table, unsqueeze each
signal, cat into the row, masked_fill the rows that start an episode) is three to five calls
of a few microseconds each, once per environment step; the values are copied, or are 0 and 1,
so both ways write the same bits (tests/fastrnn/test_rollout_inputs.py). CPU float32 and
float64, contiguous tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn import _C
from fastrnn.cpp_backend import DTYPE_CODES

_NAME = "write_next_input"


def write_next_input(out: Tensor, obs: Tensor, actions: Tensor, signals: tuple[Tensor, ...], num_actions: int,
                     reset: Tensor | None = None) -> Tensor:
    """Write [obs, one_hot(actions, num_actions), *signals] row by row into out (B, O + A + S),
    and zeros after the observation where reset (B,) bool is True (a new episode's first step:
    no previous action or signal). obs (B, O) (O may be 0), actions (B,) int64 in [0, A)
    (unread where reset), signals: up to two (B,) tensors, out's dtype. Returns out."""
    if type(num_actions) is not int or num_actions < 1:
        raise ValueError(f"{_NAME}: num_actions must be an int >= 1, got {num_actions!r}")
    if not isinstance(signals, (tuple, list)) or len(signals) > 2:
        raise ValueError(f"{_NAME}: signals must be a tuple of at most two (B,) tensors, got {signals!r}")
    _check("out", out, None, (torch.float32, torch.float64))
    if out.dim() != 2:
        raise ValueError(f"{_NAME}: out must be 2-D (B, O + A + S), got {tuple(out.shape)}")
    batch, dtype = out.shape[0], out.dtype
    _check("obs", obs, None, (dtype,))
    if obs.dim() != 2 or obs.shape[0] != batch or out.shape[1] != obs.shape[1] + num_actions + len(signals):
        raise ValueError(f"{_NAME}: out must be (B, O + A + S) = ({batch}, {obs.shape[-1]} + {num_actions} + "
                         f"{len(signals)}) for obs {tuple(obs.shape)}, got {tuple(out.shape)}")
    _check("actions", actions, (batch,), (torch.int64,))
    for i, signal in enumerate(signals):
        _check(f"signals[{i}]", signal, (batch,), (dtype,))
    if reset is not None:
        _check("reset", reset, (batch,), (torch.bool,))
    first, second = (tuple(signals) + (None, None))[:2]
    _C.write_next_input(DTYPE_CODES[dtype], batch, obs.shape[1], num_actions, len(signals), obs, actions, first,
                        second, reset, out)
    return out


def _check(name: str, tensor: Tensor, shape: tuple | None, dtypes: tuple) -> None:
    """Raise ValueError unless tensor is a contiguous CPU tensor of one of dtypes (and shape)."""
    if not (isinstance(tensor, Tensor) and tensor.device.type == "cpu" and tensor.dtype in dtypes
            and tensor.is_contiguous() and (shape is None or tensor.shape == shape)):
        got = f"{tuple(tensor.shape)} {tensor.dtype} on {tensor.device}" + ("" if tensor.is_contiguous() else
                                                                           ", strided") \
            if isinstance(tensor, Tensor) else type(tensor).__name__
        want = f"{shape} " if shape is not None else ""
        raise ValueError(f"{_NAME}: {name} must be a contiguous CPU {want}tensor of "
                         f"{' or '.join(map(str, dtypes))}, got {got}")
