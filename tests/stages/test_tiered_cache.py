"""Tiered LRU caches (an L1 per replica, one shared L2) against Che's approximation, per tier.

Construction (Che, Tung & Wang, "Hierarchical Web caching systems", IEEE JSAC 20(7), 2002,
who model a two-level hierarchy this way): requests follow the independent reference model
with Zipf popularity q and reach one of R replicas uniformly at random, so each replica's L1
sees the same popularity q (thinned in time, which LRU does not notice): its hit ratio for
item i is h1_i = 1 - exp(-q_i T1), with T1 solving sum_i (1 - exp(-q_i T1)) = C1. L2 sees
only what the L1s miss. That stream is not IRM (an item just missed in one L1 is now in it),
and the literature's approximation treats it as IRM with the filtered popularity
q'_i = q_i (1 - h1_i) / sum_j q_j (1 - h1_j); Che's formula with C2 on q' gives h2_i, and the
L2 hit ratio (L2 hits over L1 misses) is sum_i q'_i h2_i. Measured after a warm-up of the
first fifth; tolerances: 0.01 for L1 (exact IRM, as tests/stages/test_cache_theory.py) and
0.02 for L2 (the approximation's own error on a filtered stream).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import scenario
from scipy.optimize import brentq

import lab
from lab.dists import zipf_probabilities


def che(q: np.ndarray, capacity: int) -> np.ndarray:
    """Per-item LRU hit probability under IRM with popularity q (Che's approximation)."""
    t = brentq(lambda t: np.sum(1 - np.exp(-q * t)) - capacity, 1e-9, 1e15)
    return 1 - np.exp(-q * t)


def tiered_che(q: np.ndarray, c1: int, c2: int) -> tuple[float, float]:
    h1 = che(q, c1)
    miss = q * (1 - h1)
    q2 = miss / miss.sum()
    return float(np.sum(q * h1)), float(np.sum(q2 * che(q2, c2)))


def measured(result) -> tuple[float, float]:
    """L1 and L2 hit ratios after the warm-up, from the ledger and the L1-hit latency."""
    led = result.ledger
    warm = len(led) // 5
    hit = led["outcome"].to_numpy()[warm:] == "cache_hit"
    l2_hit = hit & (led["latency_ms"].to_numpy()[warm:] > 1.0)      # an L2 hit paid the 2 ms hop
    l1 = float(np.mean(hit & ~l2_hit))
    return l1, float(l2_hit.sum() / (len(hit) - (hit & ~l2_hit).sum()))


@pytest.mark.parametrize("alpha,catalog,replicas,c1,c2", [(0.8, 10_000, 4, 50, 1000), (1.0, 5_000, 8, 100, 500)])
def test_tiered_lru_hit_ratios_match_che_per_tier(alpha, catalog, replicas, c1, c2):
    s = scenario([{"stage": "tiered_cache", "replicas": replicas, "l1_capacity": c1, "l2_capacity": c2}],
                 requests=200_000, traffic={"arrivals": {"process": "poisson", "rate_per_s": 100.0},
                                            "prompts": {"catalog": catalog,
                                                        "popularity": {"dist": "zipf", "alpha": alpha}}})
    result = lab.simulate(s, seed=0, progress=False)
    expected = tiered_che(zipf_probabilities(catalog, alpha), c1, c2)
    got = measured(result)
    print(f"tiered alpha={alpha} N={catalog} R={replicas} C1={c1} C2={c2}: "
          f"L1 Che {expected[0]:.4f} measured {got[0]:.4f}; L2 Che {expected[1]:.4f} measured {got[1]:.4f}")
    assert abs(got[0] - expected[0]) < 0.01
    assert abs(got[1] - expected[1]) < 0.02


WARM_TRAFFIC = {"arrivals": {"process": "poisson", "rate_per_s": 20.0},
                "prompts": {"catalog": 2000, "popularity": {"dist": "zipf", "alpha": 0.9}}}
PROVIDER = [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
             "latency_ms": {"dist": "constant", "value": 500}}]


def test_warming_bills_the_top_prompts_at_list_price_and_counts_which_were_used():
    s = scenario([{"stage": "warm", "top_n": 50}, {"stage": "cache", "shared": True}], requests=5000,
                 traffic=WARM_TRAFFIC, providers=PROVIDER)
    r = lab.simulate(s, seed=0, progress=False)
    w = r.summary()["by_stage"]["warm"]
    req = r.requests
    price = (req.key_input_tokens[:50] * 0.15e-6 + req.key_output_tokens[:50] * 0.6e-6).sum()   # gpt-4o-mini
    assert w["warmed"] == 50 and w["warmed_cost_usd"] == pytest.approx(price, rel=1e-9)
    # an unlimited cache keeps every warmed entry: used = the top-50 prompts asked at least once
    assert w["warmed_used"] == len(set(req.prompt.tolist()) & set(range(50)))
    assert r.ledger.cost_usd.sum() == pytest.approx(r.summary()["cost_usd"], rel=1e-12)
    led = r.ledger
    assert not ((led.outcome != "cache_hit") & (led.t_arrival_s > 0) &
                np.isin(req.prompt, np.arange(50))).any()             # no top-50 prompt ever missed


def test_prefetch_is_billed_and_reports_its_hit_share():
    s = scenario([{"stage": "prefetch"}, {"stage": "cache", "capacity": 300, "shared": True}], requests=10_000,
                 traffic=WARM_TRAFFIC, providers=PROVIDER)
    r = lab.simulate(s, seed=0, progress=False)
    p, c = r.summary()["by_stage"]["prefetch"], r.summary()["by_stage"]["cache"]
    print(f"prefetch: {p['prefetched']} fetched, {p['prefetched_used']} used (hit share {p['hit_share']:.3f}), "
          f"${p['prefetched_cost_usd']:.4f}")
    assert 0 < p["prefetched"] <= c["misses"] and 0 <= p["prefetched_used"] <= p["prefetched"]
    assert p["hit_share"] == pytest.approx(p["prefetched_used"] / p["prefetched"])
    # the bill: every call served at list price, plus every prefetch at list price
    assert r.summary()["cost_usd"] == pytest.approx(
        float(r.baseline.cost_usd[r.run.outcome == 0].sum()) + p["prefetched_cost_usd"], rel=1e-9)
