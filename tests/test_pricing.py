"""Prices: the vectorized pricing equals genai-prices' own calculation, cached input included."""

from __future__ import annotations

import numpy as np
import pytest

import lab
from lab.errors import PricingError
from lab.pricing import model_prices, price_usage_exact

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"), ("anthropic", "claude-sonnet-4-5"),
          ("anthropic", "claude-haiku-4-5"), ("google", "gemini-2.5-flash"), ("google", "gemini-2.5-pro")]


@pytest.mark.parametrize("provider,model", MODELS)
def test_vectorized_prices_equal_genai_prices(provider, model):
    rng = np.random.default_rng(7)
    n = 40
    inp = rng.integers(1, 400_000, n)          # crosses the 200k long-context tier of Sonnet / Gemini Pro
    read = (inp * rng.random(n) * 0.8).astype(int)
    write = ((inp - read) * rng.random(n) * 0.5).astype(int) if provider == "anthropic" else np.zeros(n, int)
    out = rng.integers(0, 5000, n)
    mine = model_prices(provider, model).cost_usd(inp, out, read, write)
    for k in range(n):
        exact = price_usage_exact(provider, model, input_tokens=int(inp[k]), output_tokens=int(out[k]),
                                  cached_input_tokens=int(read[k]), cache_write_tokens=int(write[k]))
        assert mine[k] == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_long_context_tier_is_a_cliff():
    p = model_prices("google", "gemini-2.5-pro")
    assert p.input.tiers, "gemini-2.5-pro has a long-context tier in genai-prices"
    start = p.input.tiers[0][0]
    below, above = p.cost_usd([start, start + 1], [0, 0])
    assert above / (start + 1) > below / start  # every token re-priced past the threshold


def test_unpriced_model_is_an_error_with_close_names():
    with pytest.raises(PricingError, match="close names: .*claude-sonnet-4-5"):
        model_prices("anthropic", "claude-sonet-4-5")
    with pytest.raises(PricingError, match="unknown provider"):
        model_prices("azure-ish", "gpt-4o")


def test_simulated_cost_is_the_sum_of_priced_rows():
    s = lab.scenario_from_dict({"name": "p", "requests": 500,
                                "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 5}},
                                "providers": [{"name": "anthropic", "model": "claude-haiku-4-5"}]})
    r = lab.simulate(s, seed=2, progress=False)
    led = r.ledger
    p = model_prices("anthropic", "claude-haiku-4-5")
    expected = p.cost_usd(led.input_tokens.to_numpy(), led.output_tokens.to_numpy())
    assert np.allclose(led.cost_usd, expected, rtol=1e-12)
    assert r.summary()["cost_usd"] == pytest.approx(expected.sum(), rel=1e-12)
    assert r.summary()["reduction_pct"] == 0.0
