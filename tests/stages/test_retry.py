"""Resilience: retry limits, no retry on 400, Retry-After, the circuit breaker and fallback."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import mock, run

from lab.pricing import model_prices


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
