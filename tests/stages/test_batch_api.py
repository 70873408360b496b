"""Provider batch APIs and service tiers: half price, expiry, who may wait, flex and priority."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import mock, run

from lab.pricing import model_prices


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
