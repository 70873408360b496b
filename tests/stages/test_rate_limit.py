"""Provider rate limits (429 with Retry-After) and the client-side token bucket with priorities."""

from __future__ import annotations

import pytest
from stage_helpers import mock, run


def test_429s_when_rpm_is_exceeded_and_none_behind_a_client_bucket():
    provider = mock(rpm=600, latency_ms={"dist": "constant", "value": 100})   # 10 per second
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 15.0}}
    over = run([], [provider], traffic=traffic, requests=3000)
    # a token bucket admits its 600-request burst plus 10 per second: the rest is refused
    span_s = over.ledger.t_arrival_s.iloc[-1]
    expected = 1 - (600 + 10 * span_s) / 3000
    assert (over.ledger.http_status == 429).mean() == pytest.approx(expected, abs=0.02)
    behind = run([{"stage": "rate_limit", "rpm": 570}], [provider], traffic=traffic, requests=3000)
    assert (behind.ledger.http_status == 429).sum() == 0             # the bucket below the limit: none
    assert behind.summary()["by_stage"]["rate_limit"]["queued"] > 0
    assert behind.summary()["error_rate"] == 0



def test_tpm_limit_counts_input_plus_max_tokens():
    provider = mock(tpm=60_000, latency_ms={"dist": "constant", "value": 10})    # 1,000 tokens per second
    traffic = {"input_tokens": {"dist": "constant", "value": 400}, "max_tokens": 600,
               "arrivals": {"process": "poisson", "rate_per_s": 2.0}}           # 2,000 tokens per second asked
    r = run([], [provider], traffic=traffic, requests=2000)
    assert (r.ledger.http_status == 429).mean() == pytest.approx(0.5, abs=0.06)



def test_high_priority_passes_the_client_bucket_with_a_warning():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 20.0}, "priorities": {"high": 0.5, "low": 0.5}}
    r = run([{"stage": "rate_limit", "rpm": 300}], [mock(latency_ms={"dist": "constant", "value": 10})],
            traffic=traffic, requests=2000)
    led = r.ledger
    high = led[led.priority == "high"]
    low = led[led.priority == "low"]
    assert high.latency_ms.max() < 100                  # never queued
    assert low.latency_ms.median() > 10_000             # queued behind the bucket
    assert r.summary()["by_stage"]["rate_limit"]["high_priority_warnings"] > 0
