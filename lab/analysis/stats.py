"""Student's t distribution and the two tests the baselines need, in plain Python.

scipy is only a test dependency, so the t CDF is computed here from the regularized
incomplete beta function (continued fraction, as in Numerical Recipes §6.4) and its
quantile by bisection; tests check both against scipy.stats.t to 1e-9.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)
def t_ppf(p: float, df: float) -> float:
    """The t quantile: the t with P(T <= t) = p (bisection on t_cdf, to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    p, df = float(p), float(df)
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


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


def _test(mean: float, se: float, df: float, level: float, n: int, test: str) -> Difference:
    if se == 0.0:  # no spread at all: every seed gave the same difference
        p = 1.0 if mean == 0.0 else 0.0
        return Difference(mean, mean, mean, p, df, n, test, level)
    half = t_ppf(0.5 + level / 2.0, df) * se
    t = mean / se
    p = 2.0 * (1.0 - t_cdf(abs(t), df))
    return Difference(mean, mean - half, mean + half, p, df, n, test, level)


def paired_difference(baseline, candidate, level: float = 0.95) -> Difference:
    """Paired t on per-seed differences (the same seed gives both the same traffic)."""
    d = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    n = len(d)
    if n < 2:
        m = float(d.mean()) if n else math.nan
        return Difference(m, math.nan, math.nan, math.nan, 0.0, n, "none", level)
    return _test(float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), n - 1.0, level, n, "paired t")


def welch_difference(baseline, candidate, level: float = 0.95) -> Difference:
    """Welch's unequal-variance t for two independent samples."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    mean = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Difference(mean, math.nan, math.nan, math.nan, 0.0, min(len(a), len(b)), "none", level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va * va / (len(a) - 1)) + (vb * vb / (len(b) - 1))) if se > 0 else len(a) + len(b) - 2.0
    return _test(mean, se, df, level, min(len(a), len(b)), "Welch t")


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of a sample's mean; NaN bounds for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        m = float(x.mean()) if len(x) else math.nan
        return m, math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    half = t_ppf(0.5 + level / 2.0, len(x) - 1.0) * se
    m = float(x.mean())
    return m, m - half, m + half
