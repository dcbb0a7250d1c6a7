"""Randomized LSTM configurations and inputs shared by the module-level tests.

Each case is drawn from a seeded generator, so a failing case id reproduces exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pack_padded_sequence

TOLERANCES = {torch.float64: dict(atol=1e-9, rtol=1e-9), torch.float32: dict(atol=1e-5, rtol=1e-5)}


@dataclass(frozen=True)
class Case:
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    proj_size: int
    steps: int
    batch: int
    unbatched: bool
    packed: bool
    enforce_sorted: bool
    with_hx: bool

    def module_kwargs(self) -> dict:
        return dict(
            input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
            bias=self.bias, batch_first=self.batch_first, bidirectional=self.bidirectional,
            proj_size=self.proj_size,
        )

    def __str__(self) -> str:
        flags = [name for name in ("bias", "batch_first", "bidirectional", "unbatched", "packed", "with_hx")
                 if getattr(self, name)]
        return (f"I{self.input_size}H{self.hidden_size}L{self.num_layers}P{self.proj_size}"
                f"T{self.steps}B{self.batch}" + ("-" + "-".join(flags) if flags else ""))


def random_cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        hidden = rng.choice([1, 3, 7, 16, 17, 33, 48])
        unbatched = rng.random() < 0.15
        packed = not unbatched and rng.random() < 0.3
        cases.append(Case(
            input_size=rng.choice([1, 2, 5, 16, 19]),
            hidden_size=hidden,
            num_layers=rng.choice([1, 1, 2, 3]),
            bias=rng.random() < 0.8,
            batch_first=rng.random() < 0.4,
            bidirectional=rng.random() < 0.4,
            proj_size=rng.choice([0, 0, 0, 1, max(1, hidden // 2)]) if hidden > 1 else 0,
            steps=rng.choice([1, 2, 5, 9]),
            batch=1 if unbatched else rng.choice([1, 2, 5, 8, 13]),
            unbatched=unbatched,
            packed=packed,
            enforce_sorted=rng.random() < 0.5,
            with_hx=rng.random() < 0.6,
        ))
    return cases


def make_inputs(case: Case, dtype: torch.dtype, generator: torch.Generator):
    """(input, hx) for `case`: fresh random values, never zeros; hx is None when not given."""
    shape = (case.batch, case.steps) if case.batch_first else (case.steps, case.batch)
    x = torch.randn(*shape, case.input_size, dtype=dtype, generator=generator)
    directions = 2 if case.bidirectional else 1
    out = case.proj_size or case.hidden_size
    hx = None
    if case.with_hx:
        hx = (
            torch.randn(case.num_layers * directions, case.batch, out, dtype=dtype, generator=generator),
            torch.randn(case.num_layers * directions, case.batch, case.hidden_size, dtype=dtype, generator=generator),
        )
    if case.unbatched:
        x = x.squeeze(0 if case.batch_first else 1)
        hx = None if hx is None else (hx[0].squeeze(1), hx[1].squeeze(1))
    if case.packed:
        lengths = torch.randint(1, case.steps + 1, (case.batch,), generator=generator)
        if case.enforce_sorted:
            lengths = lengths.sort(descending=True).values
        lengths[0 if case.enforce_sorted else int(torch.randint(case.batch, (1,), generator=generator))] = case.steps
        x = pack_padded_sequence(x, lengths, batch_first=case.batch_first, enforce_sorted=case.enforce_sorted)
    return x, hx


def leaves(x, hx):
    """The input tensors of (x, hx) made leaves that require grad, and the rebuilt (x, hx)."""
    from torch.nn.utils.rnn import PackedSequence

    tensors = []
    if isinstance(x, PackedSequence):
        data = x.data.detach().clone().requires_grad_()
        x = PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
        tensors.append(data)
    else:
        x = x.detach().clone().requires_grad_()
        tensors.append(x)
    if hx is not None:
        hx = tuple(t.detach().clone().requires_grad_() for t in hx)
        tensors.extend(hx)
    return x, hx, tensors


def outputs_of(result):
    """The tensors an LSTM call returns: output (packed data for PackedSequence), h_n, c_n."""
    from torch.nn.utils.rnn import PackedSequence

    y, (h, c) = result
    return [y.data if isinstance(y, PackedSequence) else y, h, c]
