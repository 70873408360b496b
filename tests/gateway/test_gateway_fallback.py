"""Fallback across providers: the caller's provider keeps failing, a `fallback_models` target answers.

The caller's SDK must get an ordinary answer in its own format holding the fallback's text;
the ledger row names who answered and is billed genai-prices on that provider's usage block.
"""

from __future__ import annotations

import socket

import anthropic
import openai
import pytest
from conftest import FAKE_KEY, KEY_ENV
from genai_prices import extract_usage
from google import genai
from google.genai import types

from lab.errors import ScenarioError
from lab.gateway import config_from_dict, running
from lab.gateway.store import today
from lab.pricing import PRICE_DATE, model_prices


def _retry(*targets, **extra):
    return [{"stage": "retry", "max_attempts": 2, "base_ms": 0.0, "jitter": False, "fallback": True,
             "fallback_models": list(targets), **extra}]


def _answered(fake, provider: str) -> dict:
    return [c for c in fake.calls if c["status"] == 200 and c["provider"] == provider][-1]["response"]


def _billed(response: dict, provider: str) -> float:
    flavor = "chat" if provider == "openai" else "default"
    return float(extract_usage(response, provider_id=provider, api_flavor=flavor)
                 .calc_price(genai_request_timestamp=PRICE_DATE).total_price)


def test_openai_caller_gets_a_chat_completion_from_anthropic(fake, gateway):
    url, gw = gateway(pipeline=_retry("anthropic/claude-haiku-4-5"))
    fake.fail_next(100, status=503, provider="openai")   # OpenAI is down for the whole test
    client = openai.OpenAI(api_key=gw.store.add_learner("ada", daily_usd=1.0), base_url=f"{url}/openai/v1",
                           max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=80, temperature=1.5,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my order?"}])
    completion = raw.parse()
    upstream = _answered(fake, "anthropic")
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices[0].message.content == upstream["content"][0]["text"]
    assert completion.model == "claude-haiku-4-5" and raw.headers["x-costlab-fallback"] == "anthropic/claude-haiku-4-5"
    assert completion.usage.prompt_tokens == upstream["usage"]["input_tokens"]
    assert completion.usage.completion_tokens == upstream["usage"]["output_tokens"]
    row = gw.store.ledger().iloc[-1]
    assert (row.provider, row.model, row.retry, row.outcome) == ("anthropic", "claude-haiku-4-5", 1, "ok")
    assert row.cost_usd == pytest.approx(_billed(upstream, "anthropic"), rel=1e-9)
    assert float(raw.headers["x-costlab-cost-usd"]) == pytest.approx(row.cost_usd, abs=1e-8)
    assert [c["status"] for c in fake.calls][:2] == [503, 503]   # both OpenAI attempts were made first


def test_anthropic_caller_falls_back_to_openai_through_a_closed_port(fake, tmp_path, monkeypatch):
    """Upstream A is unreachable (nothing listens on its port); B is the fake OpenAI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    config = config_from_dict({"gateway": {"store": str(tmp_path / "gw.db")}, "pipeline": _retry("openai/gpt-4o-mini"),
                               "upstreams": [{"provider": "anthropic", "base_url": f"http://127.0.0.1:{closed}",
                                              "key_env": KEY_ENV},
                                             {"provider": "openai", "base_url": fake.base_url("openai"),
                                              "key_env": KEY_ENV}]})
    with running(config) as (url, gw):
        client = anthropic.Anthropic(api_key=gw.store.add_learner("bo", daily_usd=1.0), base_url=f"{url}/anthropic",
                                     max_retries=0)
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=80, system="Be brief.",
                                         messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        upstream = _answered(fake, "openai")
        assert isinstance(message, anthropic.types.Message)
        assert message.content[0].text == upstream["choices"][0]["message"]["content"]
        assert message.usage.output_tokens == upstream["usage"]["completion_tokens"]
        row = gw.store.ledger().iloc[-1]
        assert (row.provider, row.model, row.retry) == ("openai", "gpt-4o-mini", 1)
        assert row.cost_usd == pytest.approx(_billed(upstream, "openai"), rel=1e-9)


def _stream_openai(url, token):
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", max_tokens=60, stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Where is my order?"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens, chunks[-1].model


def _stream_anthropic(url, token):
    client = anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic", max_retries=0)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=60,
                                messages=[{"role": "user", "content": "Where is my order?"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return text, final.usage.input_tokens, final.usage.output_tokens, final.model


def _stream_google(url, token):
    client = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=f"{url}/google"))
    chunks = list(client.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Where is my order?",
        config=types.GenerateContentConfig(max_output_tokens=60)))
    text = "".join(c.text or "" for c in chunks)
    meta = chunks[-1].usage_metadata
    return text, meta.prompt_token_count, meta.candidates_token_count, chunks[-1].model_version


# caller's provider (down for the test), its SDK's streaming call, the fallback target
STREAMS = [("openai", _stream_openai, "anthropic/claude-haiku-4-5"),
           ("anthropic", _stream_anthropic, "openai/gpt-4o-mini"),
           ("google", _stream_google, "anthropic/claude-haiku-4-5")]


@pytest.mark.parametrize("caller, call, target", STREAMS, ids=[s[0] for s in STREAMS])
def test_a_stream_falls_back_to_another_provider_as_the_callers_own_events(fake, gateway, caller, call, target):
    url, gw = gateway(pipeline=_retry(target))
    fake.fail_next(100, status=503, provider=caller)
    text, tokens_in, tokens_out, model = call(url, gw.store.add_learner("cy", daily_usd=1.0))
    provider, name = target.split("/")
    upstream = _answered(fake, provider)
    fallback = next(c for c in reversed(fake.calls) if c["provider"] == provider)
    assert fallback["status"] == 200 and "stream" not in str(fallback.get("response", {}).get("object", ""))
    answered = upstream["content"][0]["text"] if provider == "anthropic" else upstream["choices"][0]["message"]["content"]
    assert text == answered and model == name
    usage = upstream["usage"]
    assert tokens_in == usage.get("input_tokens", usage.get("prompt_tokens"))
    assert tokens_out == usage.get("output_tokens", usage.get("completion_tokens"))
    row = gw.store.ledger().iloc[-1]
    assert (row.provider, row.model, row.outcome, row.retry) == (provider, name, "ok", 1)
    assert row.cost_usd == pytest.approx(_billed(upstream, provider), rel=1e-9)
    assert gw.store.spent("class", today())[1] == pytest.approx(0.0, abs=1e-12)     # nothing left held


def test_non_text_requests_fall_back_within_their_provider_only(fake, gateway):
    url, gw = gateway(pipeline=_retry("anthropic/claude-haiku-4-5"))
    fake.fail_next(100, status=503, provider="openai")
    client = openai.OpenAI(api_key=gw.store.add_learner("cy", daily_usd=1.0), base_url=f"{url}/openai/v1",
                           max_retries=0)
    with pytest.raises(openai.InternalServerError):   # tools are not translated
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "Hi"}],
                                       tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert not [c for c in fake.calls if c["provider"] == "anthropic"]
    rows = gw.store.ledger()
    assert list(rows.provider) == ["openai"] and list(rows.status) == [503]


def test_a_failing_fallback_answers_in_the_callers_error_shape(fake, gateway):
    url, gw = gateway(pipeline=_retry("anthropic/claude-haiku-4-5"))
    fake.fail_next(100, status=503, provider="openai")
    fake.fail_next(100, status=529, provider="anthropic")
    client = openai.OpenAI(api_key=gw.store.add_learner("di", daily_usd=1.0), base_url=f"{url}/openai/v1",
                           max_retries=0)
    with pytest.raises(openai.APIStatusError, match="fallback anthropic/claude-haiku-4-5 answered HTTP 529") as exc:
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.status_code == 529
    row = gw.store.ledger().iloc[-1]
    assert (row.provider, row.cost_usd, row.outcome) == ("anthropic", 0.0, "error")
    assert gw.store.spent("class", today()) == (0.0, 0.0)      # nothing billed, nothing left held


@pytest.mark.parametrize("retry, message", [
    ({"fallback": False}, "needs fallback = true"),
    ({"fallback_models": ["claude-haiku-4-5"]}, "provider/model"),
    ({"fallback_models": ["anthropic/claude-haiku-9"]}, "claude-haiku-9"),
    ({"fallback_models": ["mistral/large"]}, "provider expected"),
])
def test_fallback_models_config_is_checked(fake, retry, message):
    stage = {**_retry("anthropic/claude-haiku-4-5")[0], **retry}
    upstreams = [{"provider": p, "base_url": fake.base_url(p), "key_env": KEY_ENV} for p in ("openai", "anthropic")]
    with pytest.raises(ScenarioError, match=message):
        config_from_dict({"pipeline": [stage], "upstreams": upstreams})
    assert config_from_dict({"pipeline": _retry("anthropic/claude-haiku-4-5"), "upstreams": upstreams}
                            ).fallback_models == (("anthropic", "claude-haiku-4-5"),)


def _price(provider, model, tokens_in, tokens_out) -> float:
    return float(model_prices(provider, model).cost_usd(tokens_in, tokens_out))


def test_router_cheapest_sends_each_request_to_its_providers_cheapest_listed_model(fake, gateway):
    models = ["openai/gpt-4o", "openai/gpt-4.1-nano", "openai/gpt-4o-mini", "google/gemini-2.5-flash",
              "google/gemini-2.5-flash-lite"]
    nano, lite = "gpt-4.1-nano", "gemini-2.5-flash-lite"
    assert _price("openai", nano, 1000, 100) < _price("openai", "gpt-4o-mini", 1000, 100)   # the premise
    assert _price("google", lite, 1000, 100) < _price("google", "gemini-2.5-flash", 1000, 100)
    url, gw = gateway(pipeline=[{"stage": "router", "strategy": "cheapest", "models": models}])
    token = gw.store.add_learner("ed", daily_usd=1.0)
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o", max_tokens=40,
                                                messages=[{"role": "user", "content": "Hi"}])
    assert completion.model == nano and _answered(fake, "openai")["model"] == nano
    upstream, row = _answered(fake, "openai"), gw.store.ledger().iloc[-1]
    assert row.model == nano and row.cost_usd == pytest.approx(_billed(upstream, "openai"), rel=1e-9)
    # the baseline: the same usage on the model asked for
    assert row.baseline_cost_usd == pytest.approx(_billed({**upstream, "model": "gpt-4o"}, "openai"), rel=1e-9)
    assert row.baseline_cost_usd > row.cost_usd
    gclient = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=f"{url}/google"))
    gclient.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert fake.calls[-1]["model"] == lite and gw.store.ledger().iloc[-1].model == lite
    anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic", max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "Hi"}])
    assert fake.calls[-1]["model"] == "claude-haiku-4-5"      # no anthropic model listed: left as asked


@pytest.mark.parametrize("stage, message", [
    ({"strategy": "balanced", "models": ["openai/gpt-4o-mini"]}, "does 'cheapest'"),
    ({"strategy": "cheapest"}, "give the models"),
])
def test_router_config_is_checked(fake, stage, message):
    upstreams = [{"provider": "openai", "base_url": fake.base_url("openai"), "key_env": KEY_ENV}]
    with pytest.raises(ScenarioError, match=message):
        config_from_dict({"pipeline": [{"stage": "router", **stage}], "upstreams": upstreams})
