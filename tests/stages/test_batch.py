"""Request batching: a shared system prompt, SLA-aware flushes, members failing alone."""

from __future__ import annotations

import pytest
from stage_helpers import dashboard, sim


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


def test_a_request_batch_of_20_is_one_provider_call():
    # issue 14: provider_calls counts calls; 20 requests batched together are one call to the model
    # (the baseline sends the same 20 requests as 20 calls)
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 1000.0},
               "input_tokens": {"dist": "constant", "value": 100}, "prefix": {"system_tokens": 500}}
    r = sim([{"stage": "batch", "window_ms": 10_000, "max_batch_size": 20}], requests=20, traffic=traffic)
    s = r.summary()
    assert s["by_stage"]["batch"]["batches"] == 1
    assert s["provider_calls"] == 1 and s["baseline"]["provider_calls"] == 20
