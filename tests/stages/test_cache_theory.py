"""Response-cache hit ratios against cache theory.

References:
- LRU under the independent reference model: Che, Tung & Wang, "Hierarchical Web caching
  systems: modeling, design and experimental results", IEEE JSAC 20(7), 2002. Solve
  sum_i (1 - exp(-q_i T)) = C for the characteristic time T; hit = sum_i q_i (1 - exp(-q_i T)).
- FIFO: Martina, Garetto & Leonardi, "A unified approach to the performance analysis of
  caching systems", INFOCOM 2014: sum_i q_i T / (1 + q_i T) = C; hit = sum_i q_i * q_i T / (1 + q_i T).
- TTL caches with Poisson requests at rate lambda per key (renewal argument): fixed TTL
  (expiry set on store) hit = lambda T / (1 + lambda T); sliding TTL (a hit restarts it)
  hit = P(next inter-arrival < T) = 1 - exp(-lambda T).
The provider answers in 1 microsecond, so an answer is stored at (almost) request time, as
the models assume; hit ratios are measured after a warm-up of the first fifth of requests.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import scenario
from scipy.optimize import brentq

import lab
from lab.dists import zipf_probabilities


def che_lru_hit(q: np.ndarray, capacity: int) -> float:
    t = brentq(lambda t: np.sum(1 - np.exp(-q * t)) - capacity, 1e-9, 1e12)
    return float(np.sum(q * (1 - np.exp(-q * t))))


def fifo_hit(q: np.ndarray, capacity: int) -> float:
    t = brentq(lambda t: np.sum(q * t / (1 + q * t)) - capacity, 1e-9, 1e12)
    return float(np.sum(q * q * t / (1 + q * t)))


def measured_hit_ratio(result) -> float:
    outcome = result.ledger["outcome"].to_numpy()
    warm = len(outcome) // 5
    return float(np.mean(outcome[warm:] == "cache_hit"))


def cache_run(catalog, alpha, stage, requests=200_000, rate=100.0, seed=0):
    s = scenario([stage], requests=requests,
                 traffic={"arrivals": {"process": "poisson", "rate_per_s": rate},
                          "prompts": {"catalog": catalog, "popularity": {"dist": "zipf", "alpha": alpha}}})
    return lab.simulate(s, seed=seed, progress=False)


@pytest.mark.parametrize("alpha,catalog,capacity", [(0.8, 10_000, 100), (1.0, 5_000, 500), (0.6, 2_000, 200),
                                                   (1.2, 20_000, 50)])
def test_lru_hit_ratio_matches_che(alpha, catalog, capacity):
    result = cache_run(catalog, alpha, {"stage": "cache", "policy": "lru", "capacity": capacity})
    expected = che_lru_hit(zipf_probabilities(catalog, alpha), capacity)
    measured = measured_hit_ratio(result)
    print(f"LRU alpha={alpha} N={catalog} C={capacity}: Che {expected:.4f} measured {measured:.4f}")
    assert abs(measured - expected) < 0.01


@pytest.mark.parametrize("alpha,catalog,capacity", [(0.8, 5_000, 200), (1.0, 5_000, 100)])
def test_fifo_hit_ratio_matches_martina(alpha, catalog, capacity):
    result = cache_run(catalog, alpha, {"stage": "cache", "policy": "fifo", "capacity": capacity})
    expected = fifo_hit(zipf_probabilities(catalog, alpha), capacity)
    assert abs(measured_hit_ratio(result) - expected) < 0.01


def test_lfu_beats_lru_under_independent_requests():
    """Under IRM, perfect LFU keeps the most popular items; it must not do worse than LRU."""
    lru = measured_hit_ratio(cache_run(5000, 0.8, {"stage": "cache", "policy": "lru", "capacity": 200}))
    lfu = measured_hit_ratio(cache_run(5000, 0.8, {"stage": "cache", "policy": "lfu", "capacity": 200}))
    best = float(np.sum(np.sort(zipf_probabilities(5000, 0.8))[::-1][:200]))  # static top-C hit ratio
    assert lfu > lru + 0.02
    assert lfu <= best + 0.01


@pytest.mark.parametrize("lam_t", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_ttl_hit_ratio_closed_forms(lam_t, mode):
    keys, rate_per_s = 200, 400.0            # uniform popularity: lambda = 2 requests/s per key
    lam = rate_per_s / keys
    ttl_s = lam_t / lam
    result = cache_run(keys, 0.0, {"stage": "cache", "ttl_s": ttl_s, "ttl_mode": mode}, requests=200_000,
                       rate=rate_per_s)
    expected = lam_t / (1 + lam_t) if mode == "fixed" else 1 - np.exp(-lam_t)
    measured = measured_hit_ratio(result)
    print(f"TTL {mode} lambda*T={lam_t}: expected {expected:.4f} measured {measured:.4f}")
    assert abs(measured - expected) < 0.01


def test_capacity_in_tokens_bounds_what_is_stored():
    s = scenario([{"stage": "cache", "capacity_tokens": 50_000}], requests=20_000,
                 traffic={"prompts": {"catalog": 2000, "popularity": {"dist": "zipf", "alpha": 0.9}}})
    result = lab.simulate(s, seed=3, progress=False)
    from lab.sim import Simulation  # noqa: F401  (the stage keeps its size accounting)

    stage = result.stages[0]
    assert stage.store.size <= 50_000
    assert 0 < stage.stats()["hits"] < 20_000
