"""Prompt compression: fewer tokens at a recorded quality penalty."""

from __future__ import annotations

import pytest
from stage_helpers import mock, run

from lab.pricing import model_prices


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
