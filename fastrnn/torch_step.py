"""The lstm_cell route (fastrnn.dispatch): one no-grad step on torch's ATen lstm_cell, with the
resets and the projection nn.LSTM's step has and lstm_cell lacks, on the weights as they are."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastrnn.torch_compat import lstm_cell


def lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, resets=None):
    """(h_next, c_next) shaped like h and c; x, h, c hold B rows under any leading shape."""
    # (B, F) rows (LSTMCell's call) pass as they are: each reshape and view costs about as much
    # as a small step's arithmetic.
    rows = h.dim() == 2 and x.dim() == 2
    x2, h2, c2 = (x, h, c) if rows else (x.flatten(0, -2), h.reshape(-1, h.shape[-1]),
                                          c.reshape(-1, c.shape[-1]))
    if resets is not None:
        reset = resets.reshape(-1, 1)
        h2, c2 = torch.where(reset, 0.0, h2), torch.where(reset, 0.0, c2)
    if w_hr is None:
        h_next, c_next = lstm_cell(x2, (h2, c2), w_ih, w_hh, b_ih, b_hh)
    else:  # lstm_cell takes no projection: h has proj_size columns
        gates = F.linear(x2, w_ih, b_ih) + F.linear(h2, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c2 + torch.sigmoid(i) * torch.tanh(g)
        h_next = (torch.sigmoid(o) * torch.tanh(c_next)) @ w_hr.t()
    if rows:
        return h_next, c_next
    return h_next.view(h.shape), c_next.view(c.shape)
