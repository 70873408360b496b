"""Priorities everywhere: rate-limit shedding, budget warn/block/exempt, a breaker on an error rate, stale-while-revalidate."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import mock, run


def test_rate_limit_rejection_shares_by_priority_follow_the_token_bucket():
    """rpm = 600: a bucket of 600 refilled at 10/s; arrivals 20/s (high 20 %, normal 20 %, low 60 %).

    High passes (taking tokens), normal queues (4/s of the 10/s the bucket gives), low is refused
    whenever it would wait. Tokens are conserved once the bucket stops overflowing (after the
    first 600 / (20 - 10) = 60 s): everything admitted = 600 + 10 T - the final level, so low
    gets 600 + 10 T - N_high - N_normal, and its rejected share is 1 - that / N_low
    (about 1 - (600 + 2 T) / (12 T) = 0.783 at T = 1,000 s). Tolerance: 0.01 (the final level
    and a normal request still waiting at the end are at most a few tokens).
    """
    r = run([{"stage": "rate_limit", "rpm": 600, "reject_below": "normal"}], [mock()],
            traffic={"arrivals": {"process": "poisson", "rate_per_s": 20.0},
                     "priorities": {"high": 0.2, "normal": 0.2, "low": 0.6}}, requests=20_000)
    led = r.ledger
    T = float(led.t_arrival_s.max())
    n = led.priority.value_counts()
    rejected = led[led.outcome == "rejected"].priority.value_counts()
    predicted = 1 - (600 + 10 * T - n["high"] - n["normal"]) / n["low"]
    share = rejected["low"] / n["low"]
    print(f"rate limit: low rejected {share:.4f}, token-bucket arithmetic {predicted:.4f}; "
          f"high {rejected.get('high', 0)}, normal {rejected.get('normal', 0)} rejected")
    assert rejected.get("high", 0) == 0 and rejected.get("normal", 0) == 0
    assert share == pytest.approx(predicted, abs=0.01)
    assert r.summary()["by_stage"]["rate_limit"]["rejected_by_priority"]["low"] == rejected["low"]


BUDGET_TRAFFIC = {"arrivals": {"process": "poisson", "rate_per_s": 200.0}, "max_tokens": 500,
                  "input_tokens": {"dist": "constant", "value": 1000}, "output_tokens": {"dist": "constant", "value": 200},
                  "priorities": {"high": 0.2, "normal": 0.8}}


def budget_run(**fields):
    return run([{"stage": "budget", "daily_usd": 0.05, "per": "all", "action": "reject", **fields}], [mock()],
               traffic=BUDGET_TRAFFIC, requests=2000)


def test_budget_blocks_at_its_share_warns_earlier_and_exempts_high_priority():
    """gpt-4o-mini: a request costs $0.00027 (1,000 in, 200 out), reserves $0.00045 (500 out)."""
    blocked = budget_run(block_at=0.8)
    assert blocked.summary()["cost_usd"] <= 0.8 * 0.05 + 1e-12
    assert blocked.summary()["cost_usd"] > 0.8 * 0.05 - 0.00045            # filled to within one reservation
    exempt = budget_run(block_at=0.8, warn_at=0.5, exempt=["high"])
    led = exempt.ledger
    assert not ((led.priority == "high") & (led.outcome == "rejected")).any()
    normal_spend = led.cost_usd[(led.priority == "normal").to_numpy()].sum()
    assert normal_spend <= 0.8 * 0.05 + 1e-12
    b = exempt.summary()["by_stage"]["budget"]
    assert b["exempted"] > 0 and b["early_warnings"] > 0
    # warned requests are admitted ones: spent + reserved had passed 50 % of the cap
    warned = led[led.stage_budget & (led.outcome == "ok")]
    assert len(warned) >= b["early_warnings"]


def test_breaker_opens_on_an_error_rate_over_a_window_not_on_noise():
    providers = [mock(error_rate=0.1, outages=[{"start_s": 100, "end_s": 160}], latency_ms={"dist": "constant",
                                                                                            "value": 200})]
    stage = {"stage": "retry", "max_attempts": 1, "breaker_error_rate": 0.5, "breaker_window_s": 10,
             "breaker_min_calls": 10, "open_s": 5}
    r = run([stage], providers, traffic={"arrivals": {"process": "poisson", "rate_per_s": 20.0}}, requests=6000)
    breaker = r.stages[0].breakers[0]
    opened = [t for t, _, to in breaker.transitions if to == "open"]
    print(f"breaker opened at {[round(t, 1) for t in opened[:3]]} ... ({len(opened)} times)")
    # 10 % errors never trip it (200 calls per 10 s window: a 50 % share is ~14 sd away). In the
    # outage every call fails at once, so x s into it the window's failure share is
    # (0.1 * 20 (10 - x) + 20 x) / 200, which reaches 0.5 at x = 80 / 18 = 4.44 s (±0.5 s: Poisson counts)
    assert opened and all(100 <= t < 160 + 10 for t in opened)
    assert opened[0] == pytest.approx(100 + 80 / 18, abs=0.5)
    assert r.summary()["by_stage"]["retry"]["fast_failures"] > 0


def test_stale_while_revalidate_serves_the_expired_entry_and_refreshes_it_behind():
    """One prompt asked every ~0.5 s, TTL 10 s: without SWR a miss every TTL; with 30 s of SWR, only the first."""
    traffic = {"prompts": {"catalog": 1}, "arrivals": {"process": "poisson", "rate_per_s": 2.0}}
    plain = run([{"stage": "cache", "ttl_s": 10}], [mock(latency_ms={"dist": "constant", "value": 1000})],
                traffic=traffic, requests=2000)
    swr = run([{"stage": "cache", "ttl_s": 10, "stale_while_revalidate_s": 30}],
              [mock(latency_ms={"dist": "constant", "value": 1000})], traffic=traffic, requests=2000)
    p, s = plain.summary()["by_stage"]["cache"], swr.summary()["by_stage"]["cache"]
    horizon = swr.summary()["simulated_s"]
    assert p["misses"] >= horizon / 11 - 5                  # one per TTL (+ 1 s fetch), give or take
    t = swr.ledger.t_arrival_s
    before_first_answer = int((t < t.iloc[0] + 1.0).sum())      # asked while the first fetch was out
    assert s["misses"] == before_first_answer
    # each refresh is billed: one list price per refresh, plus the first misses
    price = float(swr.ledger.baseline_cost_usd.iloc[0])
    assert swr.summary()["cost_usd"] == pytest.approx(price * (before_first_answer + s["early_refreshes"]), rel=1e-9)
    assert s["stale_while_revalidate_hits"] >= s["early_refreshes"] > horizon / 12
    assert np.all(swr.ledger.latency_ms.iloc[before_first_answer:] < 10)   # nobody waits for the model again
