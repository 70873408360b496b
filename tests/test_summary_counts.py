"""Issue 14: the summary counts as gateways count.

- `cache_hit_rate_cacheable` = response-cache hits / requests a cache may answer (the definition
  gateways use), beside `cache_hit_rate` = hits / all requests. With one prompt, 30 % of requests
  non-cacheable and every cacheable request after the first a hit, the two are known exactly
  from the ledger's own counts.
- `[sla] p99_ms` is a latency limit like `p95_ms`: `sla_violation_rate` is the share of requests
  slower than it; giving both is an error naming the field.
"""

from __future__ import annotations

import pytest
from helpers import scenario

import lab
from lab.errors import CostlabError


def test_cache_hit_rate_cacheable_divides_by_cacheable_requests():
    s = scenario([{"stage": "cache"}], requests=2000,
                 traffic={"arrivals": {"process": "poisson", "rate_per_s": 1.0},
                          "prompts": {"catalog": 1, "non_cacheable_share": 0.3}})
    r = lab.simulate(s, seed=0, progress=False)
    summary, led = r.summary(), r.ledger
    hits = int((led.outcome == "cache_hit").sum())
    cacheable = int(r.requests.cacheable.sum())
    assert hits == cacheable - 1                                # all but the first cacheable request
    assert summary["cache_hit_rate"] == pytest.approx(hits / 2000, rel=1e-12)
    assert summary["cache_hit_rate_cacheable"] == pytest.approx(hits / cacheable, rel=1e-12)
    assert summary["cache_hit_rate_cacheable"] > summary["cache_hit_rate"]


def test_sla_p99_ms_counts_violations_like_p95_ms():
    latency = {"dist": "uniform", "low": 0.0, "high": 1000.0}   # service time only: no queue at this concurrency
    def run(sla):
        s = scenario(requests=4000, sla=sla,
                     providers=[{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                                 "latency_ms": latency}])
        return lab.simulate(s, seed=0, progress=False)
    r95, r99 = run({"p95_ms": 900.0}), run({"p99_ms": 900.0})
    latency_ms = r99.latency_ms()
    assert r99.summary()["sla_violation_rate"] == pytest.approx(float((latency_ms > 900.0).mean()), rel=1e-12)
    assert r99.summary()["sla_violation_rate"] == r95.summary()["sla_violation_rate"]
    assert 0.08 < r99.summary()["sla_violation_rate"] < 0.12   # U(0, 1000) ms: 10 % are slower than 900 ms
    assert r99.scenario.sla.limit_ms == 900.0
    with pytest.raises(CostlabError, match="p99_ms"):
        scenario(requests=10, sla={"p95_ms": 900.0, "p99_ms": 2000.0})
