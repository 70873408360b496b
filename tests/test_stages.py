"""Behaviour of the optimization stages: dedup, cache options, semantic cache, composition."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import scenario

import lab


def sim(pipeline, requests=1000, seed=0, latency_ms=1000.0, **overrides):
    providers = [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                  "latency_ms": {"dist": "constant", "value": latency_ms}}]
    s = scenario(pipeline, requests=requests, providers=providers, **overrides)
    return lab.simulate(s, seed=seed, progress=False)


ONE_PROMPT = {"prompts": {"catalog": 1}}


# -- dedup ---------------------------------------------------------------------------------

def test_dedup_n_identical_concurrent_requests_cost_one_call():
    r = sim([{"stage": "dedup"}], requests=50,
            traffic={"arrivals": {"process": "poisson", "rate_per_s": 1000.0}, **ONE_PROMPT})
    s, led = r.summary(), r.ledger
    assert s["provider_calls"] == 1
    assert s["cost_usd"] == pytest.approx(s["baseline_cost_usd"] / 50, rel=1e-12)
    assert (led.outcome == "deduplicated").sum() == 49
    # a follower waits exactly the leader's remaining time
    leader_done_s = led.t_arrival_s[0] + led.latency_ms[0] / 1000
    followers = led[led.outcome == "deduplicated"]
    np.testing.assert_allclose(followers.t_arrival_s + followers.latency_ms / 1000, leader_done_s, atol=1e-5)
    assert s["by_stage"]["dedup"]["requests_touched"] == 49
    assert s["by_stage"]["dedup"]["cost_saved_usd"] == pytest.approx(s["baseline_cost_usd"] * 49 / 50, rel=1e-9)


def test_dedup_soft_window_reuses_recent_answers():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 2.0}, **ONE_PROMPT}
    without = sim([{"stage": "dedup"}], requests=20, latency_ms=10, traffic=traffic).summary()
    with_window = sim([{"stage": "dedup", "window_s": 1000}], requests=20, latency_ms=10, traffic=traffic).summary()
    assert without["provider_calls"] >= 18          # requests 0.5 s apart, answers in 10 ms: nothing in flight
    assert with_window["provider_calls"] == 1
    assert with_window["by_stage"]["dedup"]["window_hits"] == 19


@pytest.mark.parametrize("shared,calls", [(False, 2), (True, 1)])
def test_dedup_never_leaks_across_tenants(shared, calls):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 1000.0}, **ONE_PROMPT,
               "tenants": [{"name": "a"}, {"name": "b"}]}
    r = sim([{"stage": "dedup", "shared": shared}], requests=200, traffic=traffic)
    assert r.summary()["provider_calls"] == calls


def test_dedup_skips_non_cacheable_requests():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 1000.0},
               "prompts": {"catalog": 1, "non_cacheable_share": 1.0}}
    assert sim([{"stage": "dedup"}], requests=100, traffic=traffic).summary()["provider_calls"] == 100


def test_dedup_followers_share_a_leaders_error():
    s = lab.scenario_from_dict({
        "name": "e", "requests": 30,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 1000.0}, **ONE_PROMPT},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "error_rate": 1.0,
                       "latency_ms": {"dist": "constant", "value": 1000}}],
        "pipeline": [{"stage": "dedup"}]})
    r = lab.simulate(s, progress=False)
    assert (r.ledger.outcome == "error").all()
    assert r.summary()["cost_usd"] == 0


# -- response cache ------------------------------------------------------------------------

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


def updates_run(stage, rate_per_s=2.0, latency_ms=1.0, seed=0):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 50.0},
               "prompts": {"catalog": 20}, "updates": {"rate_per_s": rate_per_s}}
    return sim([{"stage": "cache", **stage}], requests=20_000, latency_ms=latency_ms, traffic=traffic, seed=seed)


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


def stampede(stage):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 200.0}, **ONE_PROMPT}
    return sim([{"stage": "cache", "ttl_s": 10, **stage}], requests=20_000, latency_ms=1000, traffic=traffic)


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


# -- semantic cache ------------------------------------------------------------------------

def semantic(threshold, requests=40_000):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 50.0},
               "prompts": {"catalog": 200, "paraphrases": 5, "popularity": {"dist": "zipf", "alpha": 0.8},
                           "similarity": {"dist": "uniform", "low": 0.6, "high": 1.0}}}
    return sim([{"stage": "semantic_cache", "threshold": threshold}], requests=requests, latency_ms=1,
               traffic=traffic)


def test_semantic_threshold_trades_hits_for_wrong_answers():
    results = {t: semantic(t).summary() for t in (0.7, 0.8, 0.95)}
    hit_rates = [results[t]["cache_hit_rate"] for t in (0.7, 0.8, 0.95)]
    assert hit_rates[0] > hit_rates[1] > hit_rates[2]
    # wrong share of similar (non-exact) hits follows GPTCache's reported 9 % at 0.8 and 6 % at 0.95
    for t, expected in ((0.8, 0.09), (0.95, 0.06)):
        st = results[t]["by_stage"]["semantic_cache"]
        share = st["wrong_hits"] / st["similar_hits"]
        se = np.sqrt(expected * (1 - expected) / st["similar_hits"])
        assert abs(share - expected) < 4 * se + 0.005, (t, share)
        # a wrong answer has quality 0, so mean quality falls by the wrong hits' share of all requests
        assert results[t]["quality_mean"] == pytest.approx(1 - st["wrong_hits"] / results[t]["requests"], abs=1e-6)


def test_exact_wording_is_always_a_correct_hit():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 5.0}, **ONE_PROMPT}
    r = sim([{"stage": "semantic_cache", "threshold": 0.99}], requests=500, latency_ms=1, traffic=traffic)
    st = r.summary()["by_stage"]["semantic_cache"]
    assert st["exact_hits"] == 499 and st["wrong_hits"] == 0


# -- composition ---------------------------------------------------------------------------

def test_stages_compose_and_savings_add_up():
    pipeline = [{"stage": "cache", "capacity": 200}, {"stage": "semantic_cache"}, {"stage": "dedup"},
                {"stage": "prompt_cache", "rules": "openai"}]
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 40.0},
               "prompts": {"catalog": 2000, "paraphrases": 3, "popularity": {"dist": "zipf", "alpha": 0.9}},
               "prefix": {"system_tokens": 1500}}
    r = sim(pipeline, requests=30_000, latency_ms=2000, traffic=traffic)
    s, led = r.summary(), r.ledger
    saved = sum(v["cost_saved_usd"] for v in s["by_stage"].values())
    assert saved == pytest.approx(s["baseline_cost_usd"] - s["cost_usd"], rel=1e-9)
    for name in ("cache", "semantic_cache", "dedup", "prompt_cache"):
        assert s["by_stage"][name]["requests_touched"] > 0
        assert led[f"stage_{name}"].sum() == s["by_stage"][name]["requests_touched"]
    assert set(led.outcome.unique()) >= {"ok", "cache_hit", "deduplicated"}


def test_dedup_before_cache_releases_followers_when_the_cache_answers_the_leader():
    """A leader answered by a later stage (a cache hit) still releases the requests waiting on it."""
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 500.0}, "prompts": {"catalog": 3}}
    r = sim([{"stage": "dedup"}, {"stage": "cache", "hit_latency_ms": 50}], requests=3000, latency_ms=200,
            traffic=traffic)
    led = r.ledger
    assert (led.outcome != "ok").sum() > 2900
    followers = led[led.outcome == "deduplicated"]
    assert len(followers) > 0
    assert (followers.latency_ms >= 0).all()
    assert r.summary()["provider_calls"] == 3
