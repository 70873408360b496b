"""Distributions in the scenario spelling: one small frozen value per distribution.

Every distribution in a scenario file is written the same way, the unit living in the
field's name (`latency_ms`, `input_tokens`): `{ dist = "lognormal", median = 800, sigma = 0.6 }`.
Samples are drawn in numpy blocks from an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: parameters each distribution takes (required, optional)
DIST_PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("value",), ()),
    "exponential": (("mean",), ()),
    "lognormal": (("median", "sigma"), ()),
    "uniform": (("low", "high"), ()),
    "zipf": (("alpha",), ()),
    "empirical": (("values",), ("weights",)),
}


@dataclass(frozen=True)
class Dist:
    """A distribution of non-negative numbers, e.g. `Dist("exponential", mean=900.0)`."""

    dist: str
    value: float = 0.0
    mean: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    low: float = 0.0
    high: float = 0.0
    alpha: float = 0.0
    values: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    @property
    def expected(self) -> float:
        """The mean of the distribution (zipf has none here: it is used only for ranks)."""
        if self.dist == "constant":
            return self.value
        if self.dist == "exponential":
            return self.mean
        if self.dist == "lognormal":
            return self.median * float(np.exp(self.sigma**2 / 2))
        if self.dist == "uniform":
            return (self.low + self.high) / 2
        if self.dist == "empirical":
            w = np.asarray(self.weights or [1.0] * len(self.values), dtype=float)
            return float(np.dot(self.values, w / w.sum()))
        raise ValueError(f"{self.dist} has no mean here")

    def quantile(self, q: float) -> float:
        """The value below which a share `q` of draws falls (the inverse CDF), e.g. q = 0.99 for p99."""
        d = self.dist
        if d == "constant":
            return self.value
        if d == "exponential":
            return -self.mean * float(np.log1p(-q))
        if d == "lognormal":
            return self.median * float(np.exp(self.sigma * NormalDist().inv_cdf(q))) if 0 < q < 1 else \
                (0.0 if q <= 0 else float("inf"))
        if d == "uniform":
            return self.low + q * (self.high - self.low)
        if d == "empirical":
            order = np.argsort(self.values)
            values = np.asarray(self.values, dtype=float)[order]
            w = np.asarray(self.weights or [1.0] * len(values), dtype=float)[order]
            cdf = np.cumsum(w / w.sum())
            return float(values[min(int(np.searchsorted(cdf, q - 1e-12)), len(values) - 1)])
        raise ValueError(f"{d} has no quantile here")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw `n` values as float64 (callers round token counts themselves)."""
        d = self.dist
        if d == "constant":
            return np.full(n, float(self.value))
        if d == "exponential":
            return rng.exponential(self.mean, n) if self.mean > 0 else np.zeros(n)
        if d == "lognormal":
            return self.median * np.exp(self.sigma * rng.standard_normal(n))
        if d == "uniform":
            return rng.uniform(self.low, self.high, n)
        if d == "empirical":
            values = np.asarray(self.values, dtype=float)
            if self.weights:
                w = np.asarray(self.weights, dtype=float)
                idx = np.searchsorted(np.cumsum(w / w.sum()), rng.random(n), side="right")
                return values[np.minimum(idx, len(values) - 1)]
            return values[rng.integers(0, len(values), n)]
        raise ValueError(f"cannot sample {d!r} as a value distribution")


def zipf_probabilities(n_items: int, alpha: float) -> np.ndarray:
    """Popularity of ranks 1..n: p_i proportional to i^-alpha (alpha = 0 is uniform)."""
    ranks = np.arange(1, n_items + 1, dtype=float)
    w = ranks ** (-alpha)
    return w / w.sum()


def draw_ranks(rng: np.random.Generator, probabilities: np.ndarray, n: int) -> np.ndarray:
    """Draw `n` independent item indices (0-based) from `probabilities` by inverse CDF."""
    cdf = np.cumsum(probabilities)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)
