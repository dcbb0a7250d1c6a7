"""The reference backend: one LSTM layer's recurrence in plain PyTorch ops.

This is the oracle every other backend is tested against, so it is written for clarity and
independently of torch's own LSTM kernels: a Python loop over time, autograd for gradients.

The recurrence contract (shared by every backend)
-------------------------------------------------
Inputs, for a sequence of T steps and a batch of B rows:

- ``xproj``  (T, B, 4H): the input projection ``x_t W_ih^T + b_ih + b_hh``, computed outside.
- ``w_hh``   (4H, R): recurrent weights, gate order i, f, g, o. R = P with a projection, else H.
- ``w_hr``   (P, H) or None: the output projection (``proj_size`` > 0).
- ``h0``     (B, R), ``c0`` (B, H): the state before step 0.
- ``resets`` (T, B) bool or None: ``resets[t, b]`` means row b's state returns to zero (the
  state an episode starts from) just before step t. No gradient crosses a reset. Resets
  after a row's last valid step have no effect.
- ``lengths`` (B,) int64 or None: row b has ``lengths[b]`` valid steps. From step
  ``lengths[b]`` on, the row's state is frozen and its output is zero (PackedSequence
  semantics); ``h_n``/``c_n`` are then the state after its last valid step.

Per valid step::

    h, c = (0, 0) if resets[t, b] else (h_prev, c_prev)
    i, f, g, o = split(xproj[t] + h @ w_hh.T)        -> sigmoid, sigmoid, tanh, sigmoid
    c_t = f * c + i * g
    h_t = o * tanh(c_t)               (then h_t = h_t @ w_hr.T with a projection)

Returns ``(y, h_n, c_n)`` with ``y`` (T, B, R).
"""

from __future__ import annotations

import torch
from torch import Tensor


def lstm_recurrence(
    xproj: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    resets: Tensor | None = None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    steps = xproj.shape[0]
    h, c = h0, c0
    outputs = []
    for t in range(steps):
        if resets is not None:
            reset = resets[t] if lengths is None else resets[t] & (lengths > t)
            # where, not h * (1 - reset): the state becomes zero even if it was NaN or inf.
            reset = reset.unsqueeze(1)
            h, c = torch.where(reset, 0.0, h), torch.where(reset, 0.0, c)
        h_in, c_in = h, c
        if lengths is not None:
            valid = (lengths > t).unsqueeze(1)
            if t > 0:
                # A finished row's step is computed and then discarded. It starts from a zero
                # state, so that its zero gradient times a non-finite state (0 * inf in f * c's
                # backward) cannot put NaN into the row's real gradients: torch computes no such
                # step. Not at t = 0, where a packed sequence's rows are all valid: that step
                # reads h0 and c0 themselves, so autograd refuses inference-mode states as
                # torch's LSTM does (and no step depends on the data, as compiling needs).
                h_in, c_in = torch.where(valid, h, 0.0), torch.where(valid, c, 0.0)
        gates = xproj[t] + h_in @ w_hh.t()
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c_in + i * g
        h_new = o * torch.tanh(c_new)
        if w_hr is not None:
            h_new = h_new @ w_hr.t()
        if lengths is not None:
            h = torch.where(valid, h_new, h)
            c = torch.where(valid, c_new, c)
            outputs.append(torch.where(valid, h_new, torch.zeros_like(h_new)))
        else:
            h, c = h_new, c_new
            outputs.append(h_new)
    if steps == 0:
        return xproj.new_zeros(0, *h0.shape), h0, c0
    return torch.stack(outputs), h, c
