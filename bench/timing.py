"""Interleaved timing: competitors measured in alternating rounds within one run, so that a
noisy neighbour on a shared machine slows all of them alike and the ratios stay honest."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_medians(
    candidates: dict[str, Callable[[], object]],
    rounds: int = 5,
    min_round_seconds: float = 0.05,
    max_total_seconds: float = 30.0,
) -> dict[str, float]:
    """Median seconds per call of each candidate (interleaved_samples' medians)."""
    return medians(interleaved_samples(candidates, rounds, min_round_seconds, max_total_seconds))


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of numerator's time / denominator's time in the same round. Two
    candidates timed back to back in a round share the machine's state of that moment, so the
    per-round ratio cancels the drift between rounds that a ratio of two medians keeps (two
    runs of one kernel read 0.89x-1.03x that way on the shared 2-core VM)."""
    return statistics.median(a / b for a, b in zip(samples[numerator], samples[denominator]))


def interleaved_samples(
    candidates: dict[str, Callable[[], object]],
    rounds: int = 5,
    min_round_seconds: float = 0.05,
    max_total_seconds: float = 30.0,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one sample per round.

    Each candidate is warmed up, then timed in `rounds` rounds; a round calls a candidate
    enough times to last about `min_round_seconds`. Rounds alternate between candidates, in
    an order reversed every other round: a candidate that always ran right after the same
    other one would inherit its cache and frequency state in every sample. Rounds stop early
    once `max_total_seconds` is spent (at least two are always made).
    """
    calls_per_round = {}
    for name, fn in candidates.items():
        fn()  # warm-up: caches, allocator, lazy initialisation
        start = time.perf_counter()
        fn()
        single = max(time.perf_counter() - start, 1e-7)
        calls_per_round[name] = max(1, int(min_round_seconds / single))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    began = time.perf_counter()
    order = list(candidates.items())
    for round_index in range(rounds):
        for name, fn in (order if round_index % 2 == 0 else order[::-1]):
            n = calls_per_round[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
        if round_index >= 1 and time.perf_counter() - began > max_total_seconds:
            break
    return samples
