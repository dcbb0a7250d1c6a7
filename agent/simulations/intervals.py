"""The 95% interval the agent's analyses put on a statistic of paired samples: scipy's
percentile bootstrap, one draw of units (reversals, test episodes) shared by every sample."""

from __future__ import annotations

from scipy.stats import bootstrap

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_interval(statistic, *samples) -> list[float]:
    """[low, high] of statistic(*samples, axis) over resampled units; nan with fewer than 2 units.
    statistic must be vectorized (take axis=-1); samples are 1-D arrays over the same units."""
    if len(samples[0]) < 2:
        return [float("nan"), float("nan")]
    result = bootstrap(samples, statistic, paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", random_state=0)
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]
