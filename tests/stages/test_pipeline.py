"""Stages composed: savings add up, and a stage answered downstream releases those upstream."""

from __future__ import annotations

import pytest
from stage_helpers import sim


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
