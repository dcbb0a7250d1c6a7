"""agent/simulations/blocks.py: the block schedule against its definition."""

import torch

from agent.simulations.blocks import block_schedule, trial_grid


def test_block_schedule_counts_the_blocks_ended_and_finds_each_blocks_first_trial():
    generator = torch.Generator().manual_seed(0)
    for low, high, trials in ((20, 40, 100), (1, 3, 17), (5, 5, 30)):
        lengths = torch.randint(low, high + 1, (9, trials // low + 1), generator=generator)
        block, start = block_schedule(lengths, trial_grid(9, trials, "cpu"))
        ends = lengths.cumsum(1)
        t = torch.arange(trials)
        expected_block = (t.unsqueeze(-1) >= ends.unsqueeze(1)).sum(-1)  # blocks ended at or before t
        starts = torch.cat([torch.zeros(9, 1, dtype=torch.long), ends], dim=1)
        assert torch.equal(block, expected_block)
        assert torch.equal(start, starts.gather(1, expected_block))
        assert (start <= t).all() and (t - start < lengths.gather(1, block)).all()  # t lies in its block
