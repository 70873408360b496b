"""Budgets: never overshooting under concurrency, downgrades, alerts, limits per name."""

from __future__ import annotations

import pytest
from stage_helpers import mock, run


@pytest.mark.parametrize("action", ["reject", "queue", "warn"])
def test_budget_never_overshoots_under_concurrency(action):
    """1,000 requests arrive within a millisecond: every one is in flight before any is billed."""
    limit = 0.05
    r = run([{"stage": "budget", "daily_usd": limit, "per": "all", "action": action}], [mock()],
            traffic={"arrivals": {"process": "poisson", "rate_per_s": 1e6},
                     "input_tokens": {"dist": "uniform", "low": 200, "high": 3000},
                     "output_tokens": {"dist": "uniform", "low": 50, "high": 800}, "max_tokens": 1000},
            requests=1000)
    s = r.summary()
    if action == "warn":
        assert s["cost_usd"] > limit            # warn lets everything through, flagged
        assert s["by_stage"]["budget"]["warned"] > 0
        return
    led = r.ledger
    day = ((led.t_arrival_s + led.latency_ms / 1000) // 86_400).astype(int)   # spend settles when answered
    per_day = led.cost_usd.groupby(day).sum()
    assert (per_day <= limit).all()              # exact: reservations are worst cases
    assert per_day.iloc[0] > 0.5 * limit         # and it did spend most of the budget
    if action == "reject":
        assert (led.outcome == "rejected").sum() > 900
    else:  # queued requests wait for the next day's budget; none is rejected, all are answered
        assert (led.outcome == "ok").all()
        assert len(per_day) > 3



def test_budget_downgrades_to_the_cheaper_model():
    r = run([{"stage": "budget", "daily_usd": 0.02, "per": "all", "action": "downgrade"}],
            [mock("gpt-4o"), mock("gpt-4.1-nano")], traffic={"max_tokens": 500}, requests=300)
    led = r.ledger
    assert (led.model == "gpt-4.1-nano").sum() > 0
    assert r.summary()["by_stage"]["budget"]["downgraded"] > 0



def test_budget_alerts_fire_at_50_80_100_percent():
    r = run([{"stage": "budget", "daily_usd": 0.01, "per": "tenant", "action": "reject"}], [mock()],
            traffic={"max_tokens": 300}, requests=2000)
    alerts = r.summary()["by_stage"]["budget"]["alerts"]
    assert [a["threshold_pct"] for a in alerts][:2] == [50.0, 80.0]
    assert all(a["spent_usd"] >= a["threshold_pct"] / 100 * 0.01 for a in alerts)



def test_budget_limits_per_tenant_name():
    traffic = {"tenants": [{"name": "free"}, {"name": "pro"}], "max_tokens": 300,
               "arrivals": {"process": "poisson", "rate_per_s": 1000.0}}
    r = run([{"stage": "budget", "daily_usd_by": {"free": 0.01, "pro": 0.05}}], [mock()], traffic=traffic,
            requests=2000)
    spend = r.ledger.groupby("tenant", observed=True).cost_usd.sum()
    assert spend["free"] <= 0.01 and spend["pro"] <= 0.05
    assert spend["pro"] > 0.03          # each tenant spends its own budget, not the other's
