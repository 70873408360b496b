"""Cascades: cost and quality by hand, a monotone threshold sweep, the quality model required."""

from __future__ import annotations

import pytest
from stage_helpers import THREE, mock, run

import lab
from lab.pricing import model_prices
from lab.quality import quality_curve


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
