"""The three official SDKs, streaming and not, through the gateway to the fake server.

Expected numbers come from genai-prices applied to the usage block the upstream (the fake
server) actually sent, read back from the fake server's own call log, so the gateway's bill
is checked against the provider rules, not against itself.
"""

from __future__ import annotations

import anthropic
import openai
import pytest
from genai_prices import extract_usage
from google import genai
from google.genai import types

from lab.pricing import PRICE_DATE

LONG_SYSTEM = " ".join(f"rule{k} applies to every order" for k in range(400))   # > 2,048 tokens


def _billed(fake, provider: str) -> float:
    """genai-prices on the last usage block the fake upstream returned."""
    response = [c for c in fake.calls if c["status"] == 200][-1]["response"]
    flavor = "chat" if provider == "openai" else "default"
    return float(extract_usage(response, provider_id=provider, api_flavor=flavor)
                 .calc_price(genai_request_timestamp=PRICE_DATE).total_price)


def _last_row(gw):
    return gw.store.ledger().iloc[-1]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_bill_equals_genai_prices_on_upstream_usage(fake, gateway, stream):
    url, gw = gateway()
    token = gw.store.add_learner("ada", daily_usd=1.0)
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Where is my order?"}]
    for _ in range(2):   # the second call reads the provider's prompt cache
        if stream:
            chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=60,
                                                         stream=True))
            usage = chunks[-1].usage
            assert usage is not None, "the gateway asks for the usage in the stream"
        else:
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages,
                                                                   max_tokens=60)
            usage = raw.parse().usage
            assert float(raw.headers["x-costlab-cost-usd"]) == pytest.approx(_billed(fake, "openai"), abs=1e-8)
            assert raw.headers["x-costlab-cache"] == "off"
            assert float(raw.headers["x-costlab-overhead-ms"]) >= 0
        row = _last_row(gw)
        assert row.cost_usd == pytest.approx(_billed(fake, "openai"), rel=1e-9)
        assert row.input_tokens == usage.prompt_tokens and row.output_tokens == usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens > 1024          # cached tokens pass through
    assert row.cached_input_tokens == usage.prompt_tokens_details.cached_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_cache_writes_and_reads_billed(fake, gateway, stream):
    """A ~2,400-token cached system prompt on Sonnet 4.5 (minimum 1,024 in the rule book; Haiku 4.5 needs 4,096)."""
    url, gw = gateway()
    token = gw.store.add_learner("bo", daily_usd=1.0)
    client = anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic", max_retries=0)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    kwargs = dict(model="claude-sonnet-4-5", max_tokens=60, system=system,
                  messages=[{"role": "user", "content": "Where is my order?"}])
    usages = []
    for _ in range(2):
        if stream:
            with client.messages.stream(**kwargs) as s:
                usages.append(s.get_final_message().usage)
        else:
            usages.append(client.messages.create(**kwargs).usage)
        assert _last_row(gw).cost_usd == pytest.approx(_billed(fake, "anthropic"), rel=1e-9)
    assert usages[0].cache_creation_input_tokens > 2048 and usages[1].cache_read_input_tokens > 2048
    rows = gw.store.ledger()
    assert rows.cache_write_tokens.iloc[0] == usages[0].cache_creation_input_tokens
    assert rows.cached_input_tokens.iloc[1] == usages[1].cache_read_input_tokens
    assert rows.cost_usd.iloc[1] < rows.cost_usd.iloc[0]     # a read is a tenth of the price, a write 1.25x


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_sdk_bill_equals_genai_prices(fake, gateway, stream):
    url, gw = gateway()
    token = gw.store.add_learner("cy", daily_usd=1.0)
    client = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=f"{url}/google"))
    config = types.GenerateContentConfig(max_output_tokens=80, system_instruction=LONG_SYSTEM)
    for _ in range(2):
        if stream:
            last = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Where is it?",
                                                              config=config))[-1]
        else:
            last = client.models.generate_content(model="gemini-2.5-flash", contents="Where is it?", config=config)
        row = _last_row(gw)
        assert row.cost_usd == pytest.approx(_billed(fake, "google"), rel=1e-9)
        assert row.output_tokens == last.usage_metadata.candidates_token_count
    assert last.usage_metadata.cached_content_token_count > 1024 and row.cached_input_tokens > 1024


def test_response_cache_hit_is_free_and_says_so(fake, gateway):
    url, gw = gateway(pipeline=[{"stage": "cache", "ttl_s": 60}])
    token = gw.store.add_learner("di", daily_usd=1.0)
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    ask = lambda: client.chat.completions.with_raw_response.create(  # noqa: E731
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is a token?"}], max_tokens=50)
    first, second = ask(), ask()
    assert first.headers["x-costlab-cache"] == "miss" and second.headers["x-costlab-cache"] == "hit"
    assert second.headers["x-costlab-cost-usd"] == "0"
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
    assert fake.calls_total() == 1
    rows = gw.store.ledger()
    assert list(rows.outcome) == ["ok", "cache_hit"]
    assert rows.baseline_cost_usd.iloc[1] == rows.cost_usd.iloc[0] > 0


def test_budget_refusal_is_the_providers_own_error(fake, gateway):
    url, gw = gateway()
    token = gw.store.add_learner("ed", daily_usd=0.000001)
    oa = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1")   # SDK defaults: retries on
    an = anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic")
    gg = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=f"{url}/google"))
    with pytest.raises(openai.RateLimitError, match="learner ed's daily cap.*resets"):
        oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=500)
    with pytest.raises(anthropic.RateLimitError, match="daily cap"):
        an.messages.create(model="claude-haiku-4-5", max_tokens=500, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(genai.errors.ClientError, match="daily cap"):
        gg.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert fake.calls_total() == 0       # refused before any upstream call; x-should-retry: no SDK retry
    rows = gw.store.ledger()
    assert list(rows.outcome) == ["rejected"] * 3                    # one row each: the SDKs did not retry
