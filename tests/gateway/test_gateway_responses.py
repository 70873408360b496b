"""The OpenAI Responses API through the gateway to the fake server, with the official openai SDK.

The expected bill is genai-prices' responses mapping applied to the usage block the fake
upstream actually sent (its call log), so the gateway is checked against the price data, not itself.
"""

from __future__ import annotations

import openai
import pytest
from genai_prices import extract_usage

from lab.pricing import PRICE_DATE

LONG_INSTRUCTIONS = " ".join(f"rule{k} applies to every order" for k in range(400))   # > 2,048 tokens


def _upstream(fake) -> dict:
    return [c for c in fake.calls if c["status"] == 200][-1]["response"]


def _billed(fake) -> float:
    return float(extract_usage(_upstream(fake), provider_id="openai", api_flavor="responses")
                 .calc_price(genai_request_timestamp=PRICE_DATE).total_price)


def _client(url, gw, name="ada"):
    token = gw.store.add_learner(name, daily_usd=1.0)
    return openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_bill_equals_genai_prices_on_upstream_usage(fake, gateway, stream):
    url, gw = gateway()
    client = _client(url, gw)
    kwargs = dict(model="gpt-4o-mini", instructions=LONG_INSTRUCTIONS, input="Where is my order?",
                  max_output_tokens=300)
    for _ in range(2):   # the second call reads the provider's prompt cache
        if stream:
            events = list(client.responses.create(**kwargs, stream=True))
            assert events[0].type == "response.created" and events[-1].type == "response.completed"
            response = events[-1].response
        else:
            raw = client.responses.with_raw_response.create(**kwargs)
            response = raw.parse()
            assert float(raw.headers["x-costlab-cost-usd"]) == pytest.approx(_billed(fake), abs=1e-8)
        row = gw.store.ledger().iloc[-1]
        assert row.endpoint == "/openai/v1/responses" and row.outcome == "ok"
        assert row.cost_usd == pytest.approx(_billed(fake), rel=1e-9)
        assert row.input_tokens == response.usage.input_tokens and row.output_tokens == response.usage.output_tokens
        assert response.output_text == _upstream(fake)["output"][0]["content"][0]["text"]
    assert response.usage.input_tokens_details.cached_tokens > 2000          # cached tokens pass through, billed
    assert row.cached_input_tokens == response.usage.input_tokens_details.cached_tokens


def test_responses_stream_helper_and_worst_case_from_max_output_tokens(fake, gateway):
    """`responses.stream()` accumulates the events; the hold is the prompt plus max_output_tokens at list price."""
    url, gw = gateway()
    client = _client(url, gw)
    with client.responses.with_streaming_response.create(model="gpt-4o-mini", input="Hi", max_output_tokens=500,
                                                         stream=True) as raw:
        reserved_usd = float(raw.headers["x-costlab-reserved-usd"])
        list(raw.iter_lines())
    prompt_tokens = _upstream(fake)["usage"]["input_tokens"]
    worst = float(extract_usage({"model": "gpt-4o-mini", "object": "response",
                                 "usage": {"input_tokens": prompt_tokens, "output_tokens": 500}},
                                provider_id="openai", api_flavor="responses")
                  .calc_price(genai_request_timestamp=PRICE_DATE).total_price)
    assert reserved_usd == pytest.approx(worst, rel=1e-6)
    with client.responses.stream(model="gpt-4o-mini", input=[{"role": "user", "content": "Hello"}],
                                 max_output_tokens=500) as s:
        final = s.get_final_response()
    assert final.output_text and gw.store.ledger().iloc[-1].cost_usd == pytest.approx(_billed(fake), rel=1e-9)


@pytest.mark.parametrize("stream", [False, True])
def test_output_cap_cuts_max_output_tokens(fake, gateway, stream):
    url, gw = gateway(pipeline=[{"stage": "output_cap", "max_tokens": 12}])
    client = _client(url, gw)
    if stream:
        response = list(client.responses.create(model="gpt-4o-mini", input="Tell me a story", stream=True))[-1].response
    else:
        response = client.responses.create(model="gpt-4o-mini", input="Tell me a story")
    assert response.status == "incomplete" and response.usage.output_tokens == 12
    row = gw.store.ledger().iloc[-1]
    assert row.output_cap == 0 and row.output_tokens == 12      # no max_output_tokens given: the cap is set
    assert row.cost_usd == pytest.approx(_billed(fake), rel=1e-9)


def test_responses_refusals_in_openai_shape(fake, gateway):
    url, gw = gateway()
    client = _client(url, gw)
    with pytest.raises(openai.BadRequestError, match="input"):
        client.responses.create(model="gpt-4o-mini", input=[])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="nope", base_url=f"{url}/openai/v1", max_retries=0).responses.create(
            model="gpt-4o-mini", input="Hi")
