"""Alerts: budget crossings, SLA and cache-hit windows, circuit breakers — times worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import lab
from lab.analysis.alerts import AlertRules, evaluate_alerts
from lab.errors import ConfigError


def flat_ledger(n, t, cost=1.0, outcome="ok", latency_ms=0.0, **extra):
    return pd.DataFrame({"t_arrival_s": np.asarray(t, dtype=float), "cost_usd": np.full(n, cost),
                         "baseline_cost_usd": np.full(n, cost), "latency_ms": np.full(n, latency_ms),
                         "outcome": pd.Categorical(np.broadcast_to(np.asarray(outcome), (n,))), **extra})


def test_budget_alerts_fire_at_50_80_100_percent_by_hand():
    """Ten $1 requests at t = 0..9 s against a $10 budget: 5th, 8th and 10th request cross the levels."""
    led = flat_ledger(10, np.arange(10))
    alerts = evaluate_alerts(led, budget_usd=10.0)
    assert list(alerts["rule"]) == ["budget 50%", "budget 80%", "budget 100%"]
    assert list(alerts["fired_at_s"]) == [4.0, 7.0, 9.0]
    assert list(alerts["severity"]) == ["info", "warning", "critical"]
    assert alerts["cleared_at_s"].isna().all()          # the day never ends in this ledger


def test_budget_alerts_clear_when_a_new_period_starts():
    """$10 budget per 5 s: each 5 s period spends $5 (50 %) at its 5th request, cleared at the period's end."""
    led = flat_ledger(12, np.arange(12))
    alerts = evaluate_alerts(led, budget_usd=10.0, budget_period_s=5.0)
    assert list(alerts["fired_at_s"]) == [4.0, 9.0]
    assert list(alerts["cleared_at_s"]) == [5.0, 10.0]
    with pytest.raises(ConfigError, match="positive"):
        AlertRules(budget_usd=-1)


def outage_run(requests=7000, **pipeline):
    providers = [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                  "latency_ms": {"dist": "constant", "value": 500}, "outages": [{"start_s": 200, "end_s": 300}]}]
    s = lab.scenario_from_dict({"name": "outage", "requests": requests, "providers": providers,
                                "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 10.0}},
                                "sla": {"p95_ms": 1000}})
    return lab.simulate(s, seed=0, progress=False)


def test_an_outage_fires_the_sla_alert_and_a_derived_breaker_and_both_clear():
    """Outage 200-300 s at 10 req/s, every call fails; SLA 1,000 ms (calls take 500 ms otherwise).

    SLA: the first 10 s step with errors ends at 210 s (~100 errors in ~2,100 requests > 1 %);
    it clears when the 5-minute window no longer reaches back into the outage: 300 + 300 = 600 s.
    Breaker (>= 50 % errors over 30 s): the window ending 220 s holds 20 s of outage (2/3),
    the one ending 210 s only 1/3; the last tripping window ends 310 s, held open 30 s -> 340 s.
    """
    alerts = evaluate_alerts(outage_run())
    sla = alerts[alerts.rule == "SLA violations"].iloc[0]
    assert (sla.fired_at_s, sla.cleared_at_s) == (210.0, 600.0)
    assert 0.3 < sla.peak < 0.37              # 100 s of errors in a 300 s window: 1/3, plus Poisson noise
    breaker = alerts[alerts.rule == "circuit breaker open"].iloc[0]
    assert (breaker.fired_at_s, breaker.cleared_at_s) == (220.0, 340.0)
    assert len(alerts) == 2


def test_breaker_alert_comes_from_the_retry_stage_transitions_when_given_a_result():
    primary = {"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000, "outages": [{"start_s": 20, "end_s": 60}],
               "latency_ms": {"dist": "constant", "value": 100}}
    backup = {**primary, "model": "gpt-4.1-mini", "outages": []}
    s = lab.scenario_from_dict({"name": "fallback", "requests": 2000, "providers": [primary, backup],
                                "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 20.0}},
                                "pipeline": [{"stage": "retry", "max_attempts": 2, "base_ms": 10,
                                              "breaker_failures": 5, "open_s": 10, "fallback": True}]})
    r = lab.simulate(s, seed=0, progress=False)
    transitions = r.stages[0].breakers[0].transitions
    alerts = evaluate_alerts(r)
    breaker = alerts[alerts.rule == "circuit breaker open"]
    assert len(breaker) == 1
    assert breaker.iloc[0].fired_at_s == transitions[0][0]                 # first closed -> open
    assert breaker.iloc[0].cleared_at_s == transitions[-1][0]              # last half_open -> closed
    assert 20 <= breaker.iloc[0].fired_at_s < 21 and breaker.iloc[0].cleared_at_s >= 60
    # the fallback hid every error from the ledger: from the ledger alone nothing can be seen
    assert evaluate_alerts(r.ledger).empty


def test_cache_hit_rate_alert_by_hand():
    """One request a second (t = k + 0.5); every one a hit for 600 s, then none.

    The 5-minute window ending at 750 s holds 150 hits of 300 (exactly 50 %: not below); the one
    ending at 760 s holds 140: the alert fires at 760 s and never clears.
    """
    t = np.arange(1200) + 0.5
    hit = t < 600
    led = flat_ledger(1200, t, outcome=np.where(hit, "cache_hit", "ok"), stage_cache=hit)
    alerts = evaluate_alerts(led)
    assert list(alerts["rule"]) == ["cache hit rate"]
    assert alerts.iloc[0].fired_at_s == 760.0 and math.isnan(alerts.iloc[0].cleared_at_s)
    assert alerts.iloc[0].peak == 0.0
    # no cache stage in the ledger: the rule does not apply
    assert evaluate_alerts(led.drop(columns="stage_cache")).empty
