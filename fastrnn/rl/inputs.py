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
_DTYPES = (torch.float32, torch.float64)


def write_next_input(out: Tensor, obs: Tensor, actions: Tensor, signals: tuple[Tensor, ...], num_actions: int,
                     reset: Tensor | None = None) -> Tensor:
    """Write [obs, one_hot(actions, num_actions), *signals] row by row into out (B, O + A + S),
    and zeros after the observation where reset (B,) bool is True (a new episode's first step:
    no previous action or signal). obs (B, O) (O may be 0), actions (B,) int64 in [0, A)
    (unread where reset), signals: a tuple of up to two (B,) tensors, out's dtype. Returns out."""
    check_row_parts(out, obs, actions, signals, num_actions, reset)
    first, second = (signals + (None, None))[:2]
    _C.write_next_input(DTYPE_CODES[out.dtype], out.shape[0], obs.shape[1], num_actions, len(signals), obs, actions,
                        first, second, reset, out)
    return out


def check_row_parts(out: Tensor, obs: Tensor, actions: Tensor, signals: tuple[Tensor, ...], num_actions: int,
                    reset: Tensor | None, name: str = _NAME) -> None:
    """Raise ValueError, its message starting with name, unless write_next_input can take these
    arguments (also what RolloutPlan.run checks of each environment step's results)."""
    # Called once per environment step: the arguments as expected are one chain of cheap
    # attribute tests (about 1.5 us, where a check per tensor took 4); anything else goes to
    # _refuse, which names what is wrong.
    if not (type(num_actions) is int and num_actions >= 1 and isinstance(signals, tuple) and len(signals) <= 2
            and isinstance(out, Tensor) and isinstance(obs, Tensor) and isinstance(actions, Tensor)
            and out.is_cpu and out.dtype in _DTYPES and out.is_contiguous() and out.dim() == 2
            and obs.is_cpu and obs.dtype == out.dtype and obs.is_contiguous() and obs.dim() == 2
            and obs.shape[0] == out.shape[0] and out.shape[1] == obs.shape[1] + num_actions + len(signals)
            and actions.is_cpu and actions.dtype == torch.int64 and actions.is_contiguous()
            and actions.shape == out.shape[:1]
            and all(isinstance(x, Tensor) and x.is_cpu and x.dtype == out.dtype and x.is_contiguous()
                    and x.shape == out.shape[:1] for x in signals)
            and (reset is None or (isinstance(reset, Tensor) and reset.is_cpu and reset.dtype == torch.bool
                                   and reset.is_contiguous() and reset.shape == out.shape[:1]))):
        _refuse(out, obs, actions, signals, num_actions, reset, name)


def _refuse(out, obs, actions, signals, num_actions, reset, name) -> None:
    """Raise the ValueError naming the first argument of write_next_input that is not as expected."""
    if type(num_actions) is not int or num_actions < 1:
        raise ValueError(f"{name}: num_actions must be an int >= 1, got {num_actions!r}")
    if not isinstance(signals, tuple) or len(signals) > 2:
        raise ValueError(f"{name}: signals must be a tuple of at most two (B,) tensors, got {signals!r}")
    _check(name, "out", out, None, _DTYPES)
    if out.dim() != 2:
        raise ValueError(f"{name}: out must be 2-D (B, O + A + S), got {tuple(out.shape)}")
    batch, dtype = out.shape[0], out.dtype
    _check(name, "obs", obs, None, (dtype,))
    if obs.dim() != 2 or obs.shape[0] != batch or out.shape[1] != obs.shape[1] + num_actions + len(signals):
        raise ValueError(f"{name}: out must be (B, O + A + S) = ({batch}, {obs.shape[-1]} + {num_actions} + "
                         f"{len(signals)}) for obs {tuple(obs.shape)}, got {tuple(out.shape)}")
    _check(name, "actions", actions, (batch,), (torch.int64,))
    for i, signal in enumerate(signals):
        _check(name, f"signals[{i}]", signal, (batch,), (dtype,))
    if reset is not None:
        _check(name, "reset", reset, (batch,), (torch.bool,))
    raise AssertionError(f"{name}: the fast check and the named checks disagree")  # each fast test has one above


def _check(name: str, label: str, tensor: Tensor, shape: tuple | None, dtypes: tuple) -> None:
    """Raise ValueError unless tensor is a contiguous CPU tensor of one of dtypes (and shape)."""
    if not (isinstance(tensor, Tensor) and tensor.device.type == "cpu" and tensor.dtype in dtypes
            and tensor.is_contiguous() and (shape is None or tensor.shape == shape)):
        got = f"{tuple(tensor.shape)} {tensor.dtype} on {tensor.device}" + ("" if tensor.is_contiguous() else
                                                                           ", strided") \
            if isinstance(tensor, Tensor) else type(tensor).__name__
        want = f"{shape} " if shape is not None else ""
        raise ValueError(f"{name}: {label} must be a contiguous CPU {want}tensor of "
                         f"{' or '.join(map(str, dtypes))}, got {got}")
