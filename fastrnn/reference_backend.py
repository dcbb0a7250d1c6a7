"""The reference backend as a registry entry: any device, any dtype, autograd for gradients."""

from __future__ import annotations

import torch

from fastrnn.backends import Backend
from fastrnn.recurrence_op import projected_cell
from fastrnn.reference import lstm_recurrence


def recurrence(xproj, w_hh, w_hr=None, h0=None, c0=None, resets=None, lengths=None, projection=None):
    """lstm_recurrence under the backends' signature (autograd needs no projection source)."""
    return lstm_recurrence(xproj, w_hh, w_hr, h0, c0, resets, lengths)


def cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    return projected_cell(recurrence, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets)


def _supports_everything(device: torch.device, dtype: torch.dtype) -> str | None:
    return None


BACKEND = Backend(name="reference", unsupported_reason=_supports_everything, recurrence=recurrence, cell=cell)
