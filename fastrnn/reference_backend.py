"""The reference backend as a registry entry: any device, any dtype, autograd for gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastrnn.backends import Backend
from fastrnn.reference import lstm_recurrence


def cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    bias = None if b_ih is None else b_ih + b_hh
    xproj = F.linear(x.reshape(-1, x.shape[-1]), w_ih, bias).unsqueeze(0)
    step_resets = None if resets is None else resets.reshape(1, -1)
    _, h_next, c_next = lstm_recurrence(
        xproj, w_hh, w_hr, h.reshape(-1, h.shape[-1]), c.reshape(-1, c.shape[-1]), step_resets
    )
    return h_next.view(h.shape), c_next.view(c.shape)


def recurrence(xproj, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None, projection=None):
    """lstm_recurrence under the backends' signature (autograd needs no projection source)."""
    return lstm_recurrence(xproj, w_hh, w_hr, h0, c0, resets, lengths)


def _supports_everything(device: torch.device, dtype: torch.dtype) -> str | None:
    return None


BACKEND = Backend(
    name="reference",
    unsupported_reason=_supports_everything,
    recurrence=recurrence,
    cell=cell,
)
