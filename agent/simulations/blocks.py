"""Episodes cut into blocks of random lengths: which block each trial falls in, and where it began.

Reversal (Simulation 3) and risky_safe (Simulation 6) draw each row's block lengths when an
episode starts and tabulate, per trial, the block it is in (volatility, Simulation 2, counts
its swaps the same way, with one searchsorted). Every row's episode ends on its
own step, so a batch of 32 rows starts an episode on about one step in five, and what that
costs is paid on all of them: one searchsorted over the cumulative lengths, not a
(rows, trials, blocks) comparison and its sum (an episode start of reversal, risky_safe or
volatility costs half or less of what it did: docs/performance-log.md, 2026-12-07 (sixth);
the tables are the same to the bit).
"""

from __future__ import annotations

import torch
from torch import Tensor


def trial_grid(batch: int, trials: int, device) -> Tensor:
    """(batch, trials) long: each row 0 .. trials - 1, contiguous (searchsorted's values)."""
    return torch.arange(trials, device=device).expand(batch, trials).contiguous()


def block_schedule(lengths: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
    """(block, start), (B, T) long each: for trial t of row b, the index of the block it is in
    (how many blocks ended at or before t) and the trial that block began on. lengths: (B, K)
    positive block lengths whose sum exceeds every trial of grid (trial_grid(B, T))."""
    ends = lengths.cumsum(1)  # the trial on which each block's successor starts
    block = torch.searchsorted(ends, grid, right=True)
    return block, (ends - lengths).gather(1, block)
