"""One number over seeds: a mean with its 95% t interval, or the range (min-max)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_with_t_interval(values: list[float]) -> dict:
    """Mean of the finite values and its 95% t interval (None with fewer than two values);
    n counts the finite values (a failed or undefined seed is left out, and n says so)."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(finite) == 0:
        return {"mean": float("nan"), "ci95": None, "n": 0}
    mean = float(finite.mean())
    if len(finite) < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    half = float(stats.t.ppf(0.975, len(finite) - 1) * stats.sem(finite))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": int(len(finite))}


def value_range(values: list[float]) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"min": float("nan"), "max": float("nan"), "n": 0}
    return {"min": float(min(finite)), "max": float(max(finite)), "n": len(finite)}
