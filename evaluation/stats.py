"""Uncertainty of a figure: percentile bootstrap (Efron & Tibshirani 1993) and Wilson intervals."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import norm

from evaluation.figures import Figure


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, rounds: int = 200,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over ``rounds`` resamples of ``range(n)``.

    ``statistic`` receives an int array of n indices drawn with replacement, so any per-sample
    quantity (features, scores, labels) can be resampled consistently by the caller.
    """
    if n < 2 or rounds < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(rounds)], dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def mean_ci(values: np.ndarray, rounds: int = 1000, confidence: float = 0.95,
            seed: int = 0) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of per-sample values by bootstrap."""
    values = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(lambda idx: values[idx].mean(), len(values), rounds, confidence, seed)
    return float(values.mean()) if len(values) else float("nan"), lo, hi


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return float("nan"), float("nan")
    z = norm.ppf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


SUBSAMPLE_FRACTION = 0.8
"""Share of the samples in each subset of ``subsample_interval``."""


def subsample_interval(statistic: Callable[[np.ndarray], float], n: int, value: float,
                       rounds: int = 100, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Delete-d jackknife interval (Shao & Wu 1989) of a statistic of pairs of samples.

    ``statistic`` receives the int indices of a subset of m = 80% of ``range(n)``, drawn without
    replacement, so it never sees a duplicate. A subset statistic varies less around the full-set
    ``value`` than ``value`` varies between sets (they share most samples): the delete-d variance
    factor m / (n - m) (4 at 80%) corrects for that. Deviations from the subsets' mean are scaled by
    its square root and added to ``value``, so the interval is centred on the reported figure and
    the subsets' own small-sample bias (Vendi grows with N) does not shift it. On embedding-like
    features this covers the spread between independent sets of the same N (about 95% coverage at
    95%); on isotropic features both statistics are degenerate (no first-order term) and the
    interval is conservative, up to ~1.7x too wide.
    """
    m = int(round(SUBSAMPLE_FRACTION * n))
    if m < 2 or m >= n or rounds < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.choice(n, m, replace=False)) for _ in range(rounds)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    scaled = np.sqrt(m / (n - m)) * (values - values.mean())
    alpha = (1 - confidence) / 2
    return float(value + np.quantile(scaled, alpha)), float(value + np.quantile(scaled, 1 - alpha))


def proportion_figure(metric: str, correct: np.ndarray, group: str, confidence: float,
                      details: str) -> Figure:
    """The share of true values in ``correct`` (N,) bool, with a Wilson interval."""
    k, n = int(np.sum(correct)), int(len(correct))
    lo, hi = wilson_interval(k, n, confidence)
    return Figure(metric, k / n if n else float("nan"), lo, hi, n, group,
                  details + "; Wilson interval")
