"""The LSTM cores the agent can run on. All are torch.nn.LSTM (sub)classes with the same
parameter names, so weights and checkpoints move freely between them.

- "fast": fastrnn.LSTM(backend="auto"), the fused C++/Triton kernels; the default.
- "reference": fastrnn.LSTM(backend="reference"), the plain-PyTorch oracle.
- "torch": torch.nn.LSTM driven the way code without fastrnn does it: nn.LSTM has no episode
  resets, so the learning pass steps it once per time step in Python, zeroing the state of rows
  whose episode starts (CleanRL's LSTM agent). Benchmarks compare against it.

Call: core(x (T, B, I), (h, c) each (1, B, H), resets=(T, B) bool or None) -> (y (T, B, H), (h, c)).
A rollout steps any of them through fastrnn.rl (fused on the cpp backend, composed elsewhere).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

import fastrnn

CORE_NAMES = ("fast", "reference", "torch")


class TorchLoopLSTM(nn.LSTM):
    """torch.nn.LSTM with episode resets done the usual way: a Python loop over time steps."""

    last_backend = "torch.nn.LSTM"

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor], *, resets: Tensor | None = None):
        if resets is None:
            return super().forward(x, state)
        h, c = state
        outputs = []
        for t in range(x.shape[0]):
            y, (h, c) = super().forward(x[t : t + 1], _zero_where(resets[t], (h, c)))
            outputs.append(y)
        return torch.cat(outputs), (h, c)


def _zero_where(resets: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The state with the rows where resets (B,) is True set to zero: where, not * (1 - reset),
    so a NaN or inf state is zeroed too."""
    reset = resets.view(1, -1, 1)
    return torch.where(reset, 0.0, state[0]), torch.where(reset, 0.0, state[1])


def make_core(name: str, input_size: int, hidden_size: int) -> nn.LSTM:
    if name == "fast":
        return fastrnn.LSTM(input_size, hidden_size, backend="auto")
    if name == "reference":
        return fastrnn.LSTM(input_size, hidden_size, backend="reference")
    if name == "torch":
        return TorchLoopLSTM(input_size, hidden_size)
    raise ValueError(f"--core must be one of {CORE_NAMES}, got {name!r}")
