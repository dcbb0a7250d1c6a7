"""PackedSequence data <-> padded time-major tensors with per-row lengths.

Packed data is time-major: step t holds batch_sizes[t] rows, the first rows of the
(sorted) batch. So a (T, B) mask `row < batch_sizes[t]` selects exactly the packed rows.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _valid_mask(batch_sizes: Tensor, device: torch.device) -> Tensor:
    batch_sizes = batch_sizes.to(device)
    rows = torch.arange(int(batch_sizes[0]), device=device)
    return rows.unsqueeze(0) < batch_sizes.unsqueeze(1)


def unpack_to_padded(data: Tensor, batch_sizes: Tensor) -> tuple[Tensor, Tensor]:
    """(sum of lengths, F) packed data -> (T, B, F) zero-padded data and (B,) int64 lengths."""
    mask = _valid_mask(batch_sizes, data.device)
    padded = data.new_zeros(*mask.shape, data.shape[-1])
    padded[mask] = data
    return padded, mask.sum(0)


def pack_padded_output(padded: Tensor, batch_sizes: Tensor) -> Tensor:
    """(T, B, F) padded output -> (sum of lengths, F) packed data, the inverse of the above."""
    return padded[_valid_mask(batch_sizes, padded.device)]


def valid_steps(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """(T, B) bool: step t of row b lies within its length (lengths as unpack_to_padded returns
    them). Indexing a padded (T, B, F) tensor with it gives the rows of its packed data, in order."""
    return torch.arange(steps, device=device).unsqueeze(1) < lengths.to(device)
