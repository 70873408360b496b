"""Stages II: budgets, batch APIs, rate limits, routing and cascades, resilience."""

from __future__ import annotations

import numpy as np
import pytest

import lab
from lab.pricing import model_prices
from lab.quality import quality_curve


def run(pipeline, providers, traffic=None, requests=1000, seed=0):
    t = {"arrivals": {"process": "poisson", "rate_per_s": 10.0}}
    t.update(traffic or {})
    s = lab.scenario_from_dict({"name": "s2", "requests": requests, "traffic": t, "providers": providers,
                                "pipeline": pipeline})
    return lab.simulate(s, seed=seed, progress=False)


def mock(model="gpt-4o-mini", name="openai", **kw):
    p = {"name": name, "model": model, "concurrency": 100000, "latency_ms": {"dist": "constant", "value": 1000}}
    p.update(kw)
    return p


# -- budgets -------------------------------------------------------------------------------

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


# -- batch API -----------------------------------------------------------------------------

def test_batch_api_costs_exactly_half_and_expires():
    r = run([{"stage": "batch_api", "completion_s": {"dist": "exponential", "mean": 3600}, "expiry_s": 7200}],
            [mock("gpt-4o-mini")], requests=2000)
    led = r.ledger
    p = model_prices("openai", "gpt-4o-mini")
    batched = led[led.outcome == "batched"]
    standard = p.cost_usd(batched.input_tokens.to_numpy(), batched.output_tokens.to_numpy())
    np.testing.assert_allclose(batched.cost_usd, standard / 2, rtol=1e-12)     # published: 50 % of standard
    expired = led[led.outcome == "error"]
    # P(completion > 2 h) with a 1 h mean is exp(-2) = 13.5 %; expired work is not billed
    assert len(expired) / len(led) == pytest.approx(np.exp(-2), abs=0.025)
    assert (expired.cost_usd == 0).all()
    assert np.allclose(expired.latency_ms, 7_200_000, rtol=1e-6)


def test_batch_api_only_takes_requests_that_may_wait():
    r = run([{"stage": "batch_api"}], [mock()], traffic={"may_wait_share": 0.3}, requests=5000)
    share = (r.ledger.outcome == "batched").mean()
    assert share == pytest.approx(0.3, abs=0.03)


def test_flex_tier_bills_batch_prices_and_priority_costs_more():
    flex = run([], [mock(service_tier="flex")], requests=200).ledger
    prio = run([], [mock(service_tier="priority")], requests=200).ledger
    std = run([], [mock()], requests=200).ledger
    assert flex.cost_usd.sum() == pytest.approx(std.cost_usd.sum() / 2, rel=1e-9)
    assert prio.cost_usd.sum() > std.cost_usd.sum()


# -- rate limits ---------------------------------------------------------------------------

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


# -- routing and cascades -------------------------------------------------------------------

THREE = [mock("gpt-4.1-nano"), mock("gpt-4o-mini"), mock("gpt-4o")]


def test_router_picks_the_cheapest_model_meeting_the_quality_need():
    traffic = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}, "min_quality": 0.8}
    r = run([{"stage": "router", "strategy": "cheapest"}], THREE, traffic=traffic, requests=3000)
    led, req = r.ledger, r.requests
    skills = {p["model"]: lab.models.model_info("openai", p["model"]).quality for p in THREE}
    prices = {m: model_prices("openai", m) for m in skills}
    for i in range(0, 3000, 37):
        d = float(req.difficulty[i])
        ok = [m for m in skills if quality_curve(skills[m], d) >= 0.8]
        chosen = led.model[i]
        if ok:
            cheapest = min(ok, key=lambda m: float(prices[m].cost_usd([req.input_tokens[i]], [req.output_tokens[i]])[0]))
            assert chosen == cheapest, (i, d)
        else:
            assert chosen == max(skills, key=skills.get)


def test_cascade_cost_and_quality_by_hand():
    """Two requests, difficulty 0.2 (easy) and 0.9 (hard); cascade nano -> gpt-4o at threshold 0.8."""
    traffic = {"difficulty": {"dist": "empirical", "values": [0.2, 0.9], "weights": [1, 1]},
               "input_tokens": {"dist": "constant", "value": 1000}, "output_tokens": {"dist": "constant", "value": 200},
               "arrivals": {"process": "poisson", "rate_per_s": 1.0}}
    r = run([{"stage": "cascade", "models": ["gpt-4.1-nano", "gpt-4o"], "threshold": 0.8}],
            [mock("gpt-4.1-nano"), mock("gpt-4o")], traffic=traffic, requests=40)
    led, req = r.ledger, r.requests
    nano, big = model_prices("openai", "gpt-4.1-nano"), model_prices("openai", "gpt-4o")
    s_nano = lab.models.model_info("openai", "gpt-4.1-nano").quality
    s_big = lab.models.model_info("openai", "gpt-4o").quality
    c_nano, c_big = float(nano.cost_usd([1000], [200])[0]), float(big.cost_usd([1000], [200])[0])
    for i in range(40):
        d = float(req.difficulty[i])
        q_nano = float(quality_curve(s_nano, d))
        if q_nano >= 0.8:   # kept: one cheap call
            assert led.cost_usd[i] == pytest.approx(c_nano, rel=1e-12)
            assert led.quality[i] == pytest.approx(q_nano, rel=1e-6)
            assert led.model[i] == "gpt-4.1-nano"
        else:               # escalated: both calls paid, the big model's answer kept, both latencies
            assert led.cost_usd[i] == pytest.approx(c_nano + c_big, rel=1e-12)
            assert led.quality[i] == pytest.approx(float(quality_curve(s_big, d)), rel=1e-6)
            assert led.latency_ms[i] == pytest.approx(2000, rel=1e-4)


def test_cascade_threshold_sweep_is_monotone():
    traffic = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}}
    points = []
    for threshold in (0.0, 0.3, 0.6, 0.8, 0.9, 0.99):
        s = run([{"stage": "cascade", "models": ["gpt-4.1-nano", "gpt-4o-mini", "gpt-4o"], "threshold": threshold}],
                THREE, traffic=traffic, requests=3000).summary()
        points.append((s["cost_usd"], s["quality_mean"]))
    costs, qualities = zip(*points)
    assert list(costs) == sorted(costs) and list(qualities) == sorted(qualities)
    assert costs[-1] > costs[0] and qualities[-1] > qualities[0]


def test_cascade_needs_the_quality_model():
    with pytest.raises(lab.ScenarioError, match="difficulty"):
        run([{"stage": "cascade", "models": ["gpt-4.1-nano", "gpt-4o"]}], [mock("gpt-4.1-nano"), mock("gpt-4o")])


# -- resilience ----------------------------------------------------------------------------

def test_retries_stop_at_the_limit_and_never_retry_400():
    r = run([{"stage": "retry", "max_attempts": 3, "base_ms": 10}], [mock(error_rate=1.0)], requests=200)
    assert (r.ledger.attempts == 3).all() and (r.ledger.outcome == "error").all()
    r = run([{"stage": "retry", "max_attempts": 3}], [mock(bad_request_rate=1.0)], requests=200)
    assert (r.ledger.attempts == 1).all() and (r.ledger.http_status == 400).all()


def test_retries_recover_transient_errors_and_bill_once():
    r = run([{"stage": "retry", "max_attempts": 5, "base_ms": 10}], [mock(error_rate=0.3)], requests=3000)
    led = r.ledger
    assert (led.outcome == "error").mean() < 0.3 ** 5 * 3 + 0.002      # P(5 failures) = 0.24 %
    assert (led.attempts > 1).mean() == pytest.approx(0.3, abs=0.03)
    p = model_prices("openai", "gpt-4o-mini")
    ok = led[led.outcome == "ok"]
    np.testing.assert_allclose(ok.cost_usd, p.cost_usd(ok.input_tokens.to_numpy(), ok.output_tokens.to_numpy()))


def test_429_retry_honours_retry_after():
    provider = mock(rpm=60, latency_ms={"dist": "constant", "value": 10})     # one request per second
    r = run([{"stage": "retry", "max_attempts": 20, "base_ms": 1}], [provider],
            traffic={"arrivals": {"process": "poisson", "rate_per_s": 1000.0}}, requests=5)
    led = r.ledger
    assert (led.outcome == "ok").all()
    # the bucket holds 60 at start, so all five pass; drain it first to see waiting
    assert led.attempts.max() == 1


def test_breaker_opens_half_opens_and_closes_with_fallback():
    primary = mock(outages=[{"start_s": 20, "end_s": 60}], latency_ms={"dist": "constant", "value": 100})
    backup = mock("gpt-4.1-mini", latency_ms={"dist": "constant", "value": 100})
    r = run([{"stage": "retry", "max_attempts": 2, "base_ms": 10, "breaker_failures": 5, "open_s": 10,
              "fallback": True}], [primary, backup], traffic={"arrivals": {"process": "poisson", "rate_per_s": 20.0}},
            requests=2000)
    stage = r.stages[0]
    states = [(round(t, 1), a, b) for t, a, b in stage.breakers[0].transitions]
    kinds = [(a, b) for _, a, b in states]
    assert kinds[0] == ("closed", "open")
    assert ("open", "half_open") in kinds and ("half_open", "open") in kinds     # probes during the outage fail
    assert kinds[-1] == ("half_open", "closed")                                  # and the first after it succeeds
    assert 20 <= states[0][0] < 21 and states[-1][0] >= 60
    led = r.ledger
    during = led[(led.t_arrival_s > 21) & (led.t_arrival_s < 59)]
    assert (during.model == "gpt-4.1-mini").mean() > 0.95                       # fallback served the outage
    assert (during.outcome == "ok").mean() > 0.95


# -- batching and compression ----------------------------------------------------------------

def dashboard(pipeline, requests=2000, sla_ms=None, **provider):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 100.0},
               "input_tokens": {"dist": "constant", "value": 300}, "output_tokens": {"dist": "constant", "value": 50},
               "prefix": {"system_tokens": 1000}}
    data = {"name": "dash", "requests": requests, "traffic": traffic, "pipeline": pipeline,
            "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 1000, "tokens_per_s": 100,
                           "ttft_ms": {"dist": "constant", "value": 300}, **provider}]}
    if sla_ms:
        data["sla"] = {"p95_ms": sla_ms}
    return lab.simulate(lab.scenario_from_dict(data), progress=False)


def test_batching_shares_the_system_prompt_and_costs_latency():
    plain = dashboard([])
    batched = dashboard([{"stage": "batch", "window_ms": 100, "max_batch_size": 10, "overhead_tokens": 50}])
    led = batched.ledger
    st = batched.summary()["by_stage"]["batch"]
    # every member pays its own 300 tokens plus an equal share of (1,000 system + 50 overhead) tokens
    sizes = st["mean_batch_size"]
    assert 5 < sizes <= 10
    assert led.input_tokens.sum() == pytest.approx(2000 * 300 + st["batches"] * 1050, abs=0)
    assert batched.summary()["cost_usd"] < 0.6 * plain.summary()["cost_usd"]
    assert st["cost_saved_usd"] == pytest.approx(plain.summary()["cost_usd"] - batched.summary()["cost_usd"], rel=1e-9)
    assert batched.summary()["latency_ms"]["p50"] > plain.summary()["latency_ms"]["p50"]   # the price: waiting


def test_batching_flushes_early_to_keep_the_sla():
    loose = dashboard([{"stage": "batch", "window_ms": 5000, "max_batch_size": 1000, "sla_aware": False}], sla_ms=3000)
    kept = dashboard([{"stage": "batch", "window_ms": 5000, "max_batch_size": 1000}], sla_ms=3000)
    assert loose.summary()["sla_violation_rate"] > 0.5
    assert kept.summary()["by_stage"]["batch"]["early_flushes_for_sla"] > 0
    assert kept.summary()["sla_violation_rate"] < loose.summary()["sla_violation_rate"] / 2


def test_batch_members_fail_alone_and_are_retried_alone():
    r = dashboard([{"stage": "batch", "window_ms": 100}, {"stage": "retry", "max_attempts": 4, "base_ms": 10}],
                  error_rate=0.2)
    led = r.ledger
    assert (led.attempts > 1).mean() == pytest.approx(0.2, abs=0.03)      # members failed independently
    assert (led.outcome == "error").mean() < 0.01                          # and retries recovered them


def test_compression_trims_tokens_and_records_its_quality_penalty():
    traffic = {"input_tokens": {"dist": "constant", "value": 3000}, "output_tokens": {"dist": "constant", "value": 800},
               "prefix": {"system_tokens": 500}}
    r = run([{"stage": "compress", "max_input_tokens": 2000, "max_output_tokens": 500}], [mock()],
            traffic=traffic, requests=200)
    led = r.ledger
    assert (led.input_tokens == 2000).all() and (led.output_tokens == 500).all()
    # removed (3,500 - 2,000) / 3,500 = 43 % of the prompt: moderate (0.05); cut answer: 0.3
    assert led.quality.iloc[0] == pytest.approx((1 - 0.05) * (1 - 0.3), rel=1e-6)
    p = model_prices("openai", "gpt-4o-mini")
    assert led.cost_usd.iloc[0] == pytest.approx(float(p.cost_usd([2000], [500])[0]), rel=1e-12)
    st = r.summary()["by_stage"]["compress"]
    assert st["cost_saved_usd"] == pytest.approx(r.summary()["baseline_cost_usd"] - r.summary()["cost_usd"], rel=1e-9)


def test_budget_limits_per_tenant_name():
    traffic = {"tenants": [{"name": "free"}, {"name": "pro"}], "max_tokens": 300,
               "arrivals": {"process": "poisson", "rate_per_s": 1000.0}}
    r = run([{"stage": "budget", "daily_usd_by": {"free": 0.01, "pro": 0.05}}], [mock()], traffic=traffic,
            requests=2000)
    spend = r.ledger.groupby("tenant", observed=True).cost_usd.sum()
    assert spend["free"] <= 0.01 and spend["pro"] <= 0.05
    assert spend["pro"] > 0.03          # each tenant spends its own budget, not the other's


def test_a_cache_hit_returns_the_stored_answers_quality():
    traffic = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}, "prompts": {"catalog": 50}}
    r = run([{"stage": "cache"}], [mock("gpt-4.1-nano", latency_ms={"dist": "constant", "value": 10})],
            traffic=traffic, requests=2000)
    led, req = r.ledger, r.requests
    skill = lab.models.model_info("openai", "gpt-4.1-nano").quality
    expected = quality_curve(skill, req.difficulty)            # the same prompt, the same difficulty
    np.testing.assert_allclose(led.quality, expected, rtol=1e-6)
    assert (led.outcome == "cache_hit").mean() > 0.9


@pytest.mark.parametrize("strategy", ["cheapest", "fastest", "balanced", "quality_first"])
def test_vectorized_routing_equals_the_per_request_rule(strategy):
    traffic = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}, "min_quality": 0.7,
               "priorities": {"high": 0.3, "normal": 0.4, "low": 0.3},
               "input_tokens": {"dist": "lognormal", "median": 20000, "sigma": 1.5}}
    providers = THREE + [mock("claude-haiku-4-5", name="anthropic")]
    r = run([{"stage": "router", "strategy": strategy}], providers, traffic=traffic, requests=3000)
    router = r.stages[0]
    assert [router.choose(i) for i in range(3000)] == router.choices
