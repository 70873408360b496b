"""Confidence intervals and the two t-tests every face uses, on scipy.stats.

`mean_ci` is the one 95 % interval of a mean over seeds (projections, twin what-ifs, sweeps,
lessons); `paired_difference` (seeds shared: scipy's `ttest_rel`) and `welch_difference`
(independent samples: `ttest_ind(equal_var=False)`) compare a candidate with a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats


class Interval(NamedTuple):
    """A mean and its confidence interval; `half` is the half-width (NaN below two values)."""

    mean: float
    low: float
    high: float

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2


def mean_ci(values, level: float = 0.95) -> Interval:
    """(mean, low, high): the Student t interval of a sample's mean; NaN bounds for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        m = float(x.mean()) if len(x) else math.nan
        return Interval(m, math.nan, math.nan)
    m = float(x.mean())
    half = float(stats.t.ppf(0.5 + level / 2.0, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(m, m - half, m + half)


@dataclass(frozen=True)
class Difference:
    """Mean difference (candidate - baseline) with its confidence interval and a t-test."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    n: int
    test: str          # "paired t", "Welch t", or "none" (one sample each: no interval)
    level: float = 0.95

    @property
    def significant(self) -> bool | None:
        """True when the interval excludes zero (p < 1 - level); None when it cannot be told."""
        if self.test == "none" or not math.isfinite(self.p_value):
            return None
        return self.p_value < 1.0 - self.level


def _no_spread(mean: float, df: float, n: int, test: str, level: float) -> Difference:
    """Every seed gave the same difference: the interval is that value, and it is either zero or certain."""
    return Difference(mean, mean, mean, 1.0 if mean == 0.0 else 0.0, df, n, test, level)


def _from_scipy(result, mean: float, n: int, test: str, level: float) -> Difference:
    low, high = result.confidence_interval(level)
    return Difference(mean, float(low), float(high), float(result.pvalue), float(result.df), n, test, level)


def paired_difference(baseline, candidate, level: float = 0.95) -> Difference:
    """Paired t on per-seed differences (the same seed gives both the same traffic)."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    d = b - a
    n = len(d)
    if n < 2:
        return Difference(float(d.mean()) if n else math.nan, math.nan, math.nan, math.nan, 0.0, n, "none", level)
    mean = float(d.mean())
    if d.std(ddof=1) == 0.0:
        return _no_spread(mean, n - 1.0, n, "paired t", level)
    return _from_scipy(stats.ttest_rel(b, a), mean, n, "paired t", level)


def welch_difference(baseline, candidate, level: float = 0.95) -> Difference:
    """Welch's unequal-variance t for two independent samples."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    mean = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    n = min(len(a), len(b))
    if n < 2:
        return Difference(mean, math.nan, math.nan, math.nan, 0.0, n, "none", level)
    if a.var(ddof=1) == 0.0 and b.var(ddof=1) == 0.0:
        return _no_spread(mean, len(a) + len(b) - 2.0, n, "Welch t", level)
    return _from_scipy(stats.ttest_ind(b, a, equal_var=False), mean, n, "Welch t", level)
