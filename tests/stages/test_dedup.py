"""In-flight deduplication: one call for identical requests, soft windows, tenants, errors shared."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import ONE_PROMPT, sim

import lab


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
