"""Response cache options: tenant keys, non-cacheable requests, invalidation, dynamic and sliding TTL, stampedes."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import ONE_PROMPT, mock, run, sim

import lab
from lab.quality import quality_curve


def updates_run(stage, rate_per_s=2.0, latency_ms=1.0, seed=0):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 50.0},
               "prompts": {"catalog": 20}, "updates": {"rate_per_s": rate_per_s}}
    return sim([{"stage": "cache", **stage}], requests=20_000, latency_ms=latency_ms, traffic=traffic, seed=seed)


def stampede(stage):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 200.0}, **ONE_PROMPT}
    return sim([{"stage": "cache", "ttl_s": 10, **stage}], requests=20_000, latency_ms=1000, traffic=traffic)


@pytest.mark.parametrize("shared,misses", [(False, 2), (True, 1)])
def test_cache_keys_include_the_tenant_unless_shared(shared, misses):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 1.0}, **ONE_PROMPT,
               "tenants": [{"name": "a"}, {"name": "b"}]}
    r = sim([{"stage": "cache", "shared": shared}], requests=300, latency_ms=1, traffic=traffic)
    assert r.summary()["by_stage"]["cache"]["misses"] == misses



def test_non_cacheable_requests_are_never_stored():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 1.0},
               "prompts": {"catalog": 1, "non_cacheable_share": 0.3}}
    r = sim([{"stage": "cache"}], requests=2000, latency_ms=1, traffic=traffic)
    led = r.ledger
    # every cacheable request after the first is a hit; the 30 % non-cacheable all go to the provider
    assert r.summary()["provider_calls"] == pytest.approx(0.3 * 2000 + 1, abs=60)
    assert not (led.outcome == "cache_hit").all()



def test_without_invalidation_updates_serve_stale_answers_with_lower_quality():
    r = updates_run({"invalidate_on_update": False})
    stats = r.summary()["by_stage"]["cache"]
    assert stats["stale_hits"] > 1000
    assert r.summary()["quality_mean"] < 1.0
    fixed = updates_run({"invalidate_on_update": True})
    assert fixed.summary()["by_stage"]["cache"]["stale_hits"] == 0
    assert fixed.summary()["quality_mean"] == 1.0
    assert fixed.summary()["provider_calls"] > r.summary()["provider_calls"]   # freshness costs calls



def test_versioning_stops_in_flight_answers_repopulating_stale_entries():
    # slow answers (2 s) and frequent updates: answers often return after their data changed
    versioned = updates_run({"versioned": True}, rate_per_s=5.0, latency_ms=2000)
    racy = updates_run({"versioned": False}, rate_per_s=5.0, latency_ms=2000)
    assert versioned.summary()["by_stage"]["cache"]["stale_hits"] == 0
    assert versioned.summary()["by_stage"]["cache"]["blocked_stale_fills"] > 0
    assert racy.summary()["by_stage"]["cache"]["stale_hits"] > 0



def test_dynamic_ttl_shortens_ttl_for_volatile_prompts():
    stage = {"invalidate_on_update": False, "ttl_s": 600}
    fixed = updates_run(stage)
    dynamic = updates_run({**stage, "dynamic_ttl": True, "changes_per_ttl": 0.05})
    f, d = fixed.summary()["by_stage"]["cache"], dynamic.summary()["by_stage"]["cache"]
    assert d["stale_hits"] < 0.5 * f["stale_hits"]



def test_stampede_protection_coalescing_and_xfetch():
    plain = stampede({})
    coalesced = stampede({"coalesce": True})
    xfetch = stampede({"coalesce": True, "xfetch_beta": 1.0})
    calls = [r.summary()["provider_calls"] for r in (plain, coalesced, xfetch)]
    # ~100 s of traffic, an expiry every ~11 s: without protection every request in the 1 s
    # refill window misses (about 200 per expiry); coalescing makes that one call per expiry
    assert calls[0] > 1000
    assert calls[1] < 20
    # XFetch refreshes before expiry in the background: (almost) no request waits for a miss
    assert xfetch.summary()["by_stage"]["cache"]["early_refreshes"] > 3
    assert xfetch.summary()["latency_ms"]["p99"] < coalesced.summary()["latency_ms"]["p99"]
    assert xfetch.summary()["by_stage"]["cache"]["misses"] <= 2
    # refreshes are paid for: the bill includes them
    assert xfetch.summary()["cost_usd"] > 0



def test_sliding_ttl_keeps_popular_entries():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 10.0}, **ONE_PROMPT}
    fixed = sim([{"stage": "cache", "ttl_s": 5}], requests=5000, latency_ms=1, traffic=traffic)
    sliding = sim([{"stage": "cache", "ttl_s": 5, "ttl_mode": "sliding"}], requests=5000, latency_ms=1,
                  traffic=traffic)
    assert sliding.summary()["by_stage"]["cache"]["misses"] < fixed.summary()["by_stage"]["cache"]["misses"]



def test_a_cache_hit_returns_the_stored_answers_quality():
    traffic = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}, "prompts": {"catalog": 50}}
    r = run([{"stage": "cache"}], [mock("gpt-4.1-nano", latency_ms={"dist": "constant", "value": 10})],
            traffic=traffic, requests=2000)
    led, req = r.ledger, r.requests
    skill = lab.models.model_info("openai", "gpt-4.1-nano").quality
    expected = quality_curve(skill, req.difficulty)            # the same prompt, the same difficulty
    np.testing.assert_allclose(led.quality, expected, rtol=1e-6)
    assert (led.outcome == "cache_hit").mean() > 0.9
