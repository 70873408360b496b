"""Routing: the cheapest model meeting the quality need, and the vectorized rule equal to the per-request one."""

from __future__ import annotations

import re

import pytest
from stage_helpers import THREE, mock, run

import lab
from lab.pricing import model_prices
from lab.quality import quality_curve
from lab.stages import router as router_module


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



@pytest.mark.parametrize("strategy", ["cheapest", "fastest", "balanced", "quality_first"])
def test_vectorized_routing_equals_the_per_request_rule(strategy):
    traffic = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}, "min_quality": 0.7,
               "priorities": {"high": 0.3, "normal": 0.4, "low": 0.3},
               "input_tokens": {"dist": "lognormal", "median": 20000, "sigma": 1.5}}
    providers = THREE + [mock("claude-haiku-4-5", name="anthropic")]
    r = run([{"stage": "router", "strategy": strategy}], providers, traffic=traffic, requests=3000)
    router = r.stages[0]
    assert [router.choose(i) for i in range(3000)] == router.choices


def test_docstring_states_the_default_weights_as_they_are():
    # issue 14: the docstring is the documentation of the balanced score; it must be the code's numbers
    stated = {m.group(1): tuple(float(x) for x in m.group(2).split(","))
              for m in re.finditer(r"^\s+(high|normal|low):\s+([\d., ]+?)\s*(?:\(|$)", router_module.__doc__, re.M)}
    assert stated == router_module.DEFAULT_WEIGHTS
    assert all(abs(sum(w) - 1.0) < 1e-12 for w in router_module.DEFAULT_WEIGHTS.values())
