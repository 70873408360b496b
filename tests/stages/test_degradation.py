"""Graceful degradation and the optimizer's own latency: stage outages, on_failure, overhead_ms.

The outage: 20,000 requests at 50/s (400 s), a 1,000-prompt Zipf(0.9) catalog, an unlimited
LRU cache, one provider answering in 1 s; the cache's store is down for [180 s, 220 s), a
tenth of the run. While it is down nothing is looked up or stored, so the cache leaves the
window exactly as it entered it under either policy: `bypass` and `reject` see the same
cache before and after, and differ only inside the window. Hence the figures, exact up to
float summation (tolerance 1e-9 relative): under bypass, every request in the window pays
its baseline (list) price; under reject, the window costs nothing and the bill is the
bypass bill minus exactly that; before the window, both equal the run without an outage.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import scenario
from hypothesis import given, settings
from hypothesis import strategies as st

import lab

WINDOW = (180.0, 220.0)


def outage_run(on_failure: str | None, overhead=None, sla=None):
    stage = {"stage": "cache"}
    if on_failure:
        stage.update(outages=[list(WINDOW)], on_failure=on_failure)
    if overhead:
        stage["overhead_ms"] = overhead
    extra = {"sla": sla} if sla else {}
    s = scenario([stage], requests=20_000,
                 traffic={"arrivals": {"process": "poisson", "rate_per_s": 50.0},
                          "prompts": {"catalog": 1000, "popularity": {"dist": "zipf", "alpha": 0.9}}},
                 providers=[{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                             "latency_ms": {"dist": "constant", "value": 1000}}], **extra)
    return lab.simulate(s, seed=0, progress=False)


def in_window(led) -> np.ndarray:
    return ((led.t_arrival_s >= WINDOW[0]) & (led.t_arrival_s < WINDOW[1])).to_numpy()


def test_a_cache_outage_under_bypass_costs_the_baseline_price_in_the_window_and_nothing_under_reject():
    none, bypass, reject = outage_run(None), outage_run("bypass"), outage_run("reject")
    lb, lr, ln = bypass.ledger, reject.ledger, none.ledger
    w = in_window(lb)
    before = (lb.t_arrival_s < WINDOW[0]).to_numpy()
    window_baseline = float(lb.baseline_cost_usd[w].sum())
    print(f"outage window: {w.sum():,} requests ({w.mean():.1%} of the run); bypass pays "
          f"${lb.cost_usd[w].sum():.4f} for them, their baseline ${window_baseline:.4f}; without the outage "
          f"${ln.cost_usd[w].sum():.4f}; bills: none ${none.summary()['cost_usd']:.4f}, "
          f"bypass ${bypass.summary()['cost_usd']:.4f}, reject ${reject.summary()['cost_usd']:.4f}")
    assert 0.09 < w.mean() < 0.11
    assert lb.cost_usd[w].sum() == pytest.approx(window_baseline, rel=1e-9)
    assert (lb.outcome[w] == "ok").all() and (lr.outcome[w] == "rejected").all()
    assert lr.cost_usd[w].sum() == 0
    assert reject.summary()["cost_usd"] == pytest.approx(bypass.summary()["cost_usd"] - window_baseline, rel=1e-9)
    assert lr.cost_usd[before].sum() == pytest.approx(ln.cost_usd[before].sum(), rel=1e-12)
    assert (lr.cost_usd[~w] == lb.cost_usd[~w]).all()
    stats = bypass.summary()["by_stage"]["cache"]
    assert stats["outage_bypassed"] == w.sum() and reject.summary()["by_stage"]["cache"]["outage_rejected"] == w.sum()
    # failing open costs latency too: no 2 ms hit in the window, every request waits for the model
    assert (lb.latency_ms[w] >= 1000).all() and (ln.latency_ms[w] < 10).any()
    # a refusal is nobody's saving: the cache is credited only with its hits
    assert reject.summary()["by_stage"]["cache"]["cost_saved_usd"] == pytest.approx(
        float(lr.baseline_cost_usd[(lr.outcome == "cache_hit").to_numpy()].sum()), rel=1e-9)


def test_overhead_is_in_the_ledger_and_the_latency_and_alerts_over_its_bound():
    plain = outage_run(None)
    slow = outage_run(None, overhead={"dist": "constant", "value": 5}, sla={"overhead_p95_ms": 4})
    assert (slow.ledger.overhead_ms == 5).all() and (plain.ledger.overhead_ms == 0).all()
    assert np.allclose(slow.ledger.latency_ms - plain.ledger.latency_ms, 5, atol=1e-3)
    block = slow.summary()["overhead_ms"]
    assert block["p95"] == 5 and block["alert"] is True and block["bound_p95_ms"] == 4
    assert "overhead_ms" not in plain.summary()              # no stage adds any: the summary is as before
    ok = outage_run(None, overhead={"dist": "constant", "value": 5}, sla={"overhead_p95_ms": 6})
    assert ok.summary()["overhead_ms"]["alert"] is False


def test_overhead_draws_do_not_move_the_stages_other_random_numbers():
    """A retry stage's jitter is the same with and without an overhead on it."""
    base = {"stage": "retry", "max_attempts": 3}
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 20.0}}
    providers = [{"name": "openai", "model": "gpt-4o-mini", "error_rate": 0.3,
                  "latency_ms": {"dist": "constant", "value": 100}}]
    a = lab.simulate(scenario([base], requests=500, traffic=traffic, providers=providers), progress=False)
    b = lab.simulate(scenario([{**base, "overhead_ms": {"dist": "exponential", "mean": 3}}], requests=500,
                              traffic=traffic, providers=providers), progress=False)
    assert np.allclose(b.ledger.latency_ms - b.ledger.overhead_ms, a.ledger.latency_ms, atol=1e-2)


def test_outages_only_on_stages_with_a_store_or_a_worker():
    with pytest.raises(lab.ScenarioError, match="only a stage with a store or a worker"):
        scenario([{"stage": "router", "outages": [[0, 10]]}])
    with pytest.raises(lab.ScenarioError, match="on_failure"):
        scenario([{"stage": "cache", "outages": [[0, 10]], "on_failure": "panic"}])


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                 st.lists(st.one_of(st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-5, 5),
                                                       st.booleans(), st.text(max_size=2)), max_size=3),
                                    st.integers(), st.text(max_size=3)), max_size=4)))
def test_any_outages_value_is_read_or_refused_with_one_clear_error(value):
    try:
        s = scenario([{"stage": "cache", "outages": value}])
    except lab.ScenarioError as exc:
        assert "outages" in str(exc)
        return
    windows = s.pipeline[0].outages
    assert list(windows) == sorted(windows) and all(0 <= a < b < float("inf") for a, b in windows)
