"""The fake provider server: wire formats the official SDKs accept, tiktoken usage, caching rules, errors.

Numbers checked are the rule book's (lab/data/provider_rules.toml, each with its source):
OpenAI caches prompts from 1,024 tokens in 128-token steps (OpenAI prompt-caching guide);
Anthropic caches up to a `cache_control` breakpoint of at least 1,024 tokens on Sonnet 4.6 and
4,096 on Haiku 4.5 (Anthropic prompt-caching page, "Cache limitations"), reporting writes then
reads, split by TTL; Gemini caches implicitly from 2,048 tokens on 2.5 Flash and Pro and 4,096
on 3.x Pro (ai.google.dev/gemini-api/docs/caching, Oct 2026) and counts thinking within
`maxOutputTokens`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.providers.fake_server import FAIL_HEADER, FakeProviderServer, reply_text
from lab.tokens import count_messages, count_tokens, deterministic_text

KEY = "sk-test-fake-server"


@pytest.fixture
def fake():
    with FakeProviderServer(port=0) as server:
        yield server


def openai_client(fake, **kw):
    return openai.OpenAI(api_key=KEY, base_url=fake.base_url("openai"), max_retries=0, **kw)


def anthropic_client(fake):
    return anthropic.Anthropic(api_key=KEY, base_url=fake.base_url("anthropic"), max_retries=0)


def gemini_client(fake):
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.base_url("google")))


def post(url: str, body: dict, headers=None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


@pytest.mark.parametrize("n", [0, 1, 7, 128, 1024, 3001])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_deterministic_text_has_exactly_n_tokens(n, model):
    text = deterministic_text("seed", n)
    assert count_tokens(text, model) == n
    assert text == deterministic_text("seed", n)
    assert deterministic_text("seed", n + 50).startswith(text)


def test_base_urls_and_the_server_stops():
    with FakeProviderServer() as server:
        port = server.port
        assert port > 0
        assert server.base_url("openai") == f"http://127.0.0.1:{port}/v1"
        assert server.base_url("anthropic") == server.base_url("google") == f"http://127.0.0.1:{port}"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=2)


def test_openai_usage_is_tiktoken_and_prompt_caching_follows_openai_rules(fake):
    client = openai_client(fake)
    long = [{"role": "system", "content": deterministic_text("sys", 1500)}, {"role": "user", "content": "Hello"}]
    short = [{"role": "user", "content": deterministic_text("short", 900)}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=long, max_completion_tokens=30)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=long, max_completion_tokens=30)
    assert first.usage.prompt_tokens == count_messages(long, "gpt-4o-mini") == second.usage.prompt_tokens
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached <= second.usage.prompt_tokens
    assert second.usage.prompt_tokens - cached < 128 + 20   # all full blocks of the repeated prompt
    # below 1,024 tokens nothing is cached, however often the prompt repeats
    for _ in range(2):
        r = client.chat.completions.create(model="gpt-4o-mini", messages=short, max_completion_tokens=5)
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    # the cache is per model
    other = client.chat.completions.create(model="gpt-4.1-mini", messages=long, max_completion_tokens=5)
    assert other.usage.prompt_tokens_details.cached_tokens == 0


def test_reply_is_deterministic_and_cut_at_max_tokens(fake):
    client = openai_client(fake)
    messages = [{"role": "user", "content": "Tell me a story"}]
    full = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    natural_tokens = full.usage.completion_tokens
    assert 40 <= natural_tokens < 200 and full.choices[0].finish_reason == "stop"
    assert count_tokens(full.choices[0].message.content, "gpt-4o-mini") == natural_tokens
    cut = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_completion_tokens=10)
    assert cut.usage.completion_tokens == 10 and cut.choices[0].finish_reason == "length"
    assert full.choices[0].message.content.startswith(cut.choices[0].message.content)
    with FakeProviderServer() as other:
        again = openai_client(other).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert again.choices[0].message.content == full.choices[0].message.content


def test_anthropic_cache_breakpoints_write_then_read_with_ttl_split(fake):
    client = anthropic_client(fake)
    system = deterministic_text("policy", 2000)
    def ask(ttl=None, question="Where is my order?"):
        control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
        return client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=[
            {"role": "user", "content": question}], system=[{"type": "text", "text": system, "cache_control": control}])

    total = count_messages([{"role": "user", "content": "Where is my order?"}], "claude-sonnet-4-6",
                           "anthropic", system=system)
    first = ask().usage
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens == first.cache_creation.ephemeral_5m_input_tokens == 2003
    assert first.input_tokens + first.cache_creation_input_tokens == total   # input_tokens excludes cache writes
    second = ask(question="How do I return an item?").usage                   # same system prompt: read
    assert second.cache_read_input_tokens == 2003 and second.cache_creation_input_tokens == 0
    assert second.input_tokens < 20
    with FakeProviderServer() as other:                                        # a fresh server, 1-hour TTL
        client = anthropic_client(other)
        first_1h = ask(ttl="1h").usage
    assert first_1h.cache_creation.ephemeral_1h_input_tokens == 2003
    assert first_1h.cache_creation.ephemeral_5m_input_tokens == 0


def test_anthropic_no_breakpoint_or_too_short_means_no_cache(fake):
    client = anthropic_client(fake)
    for _ in range(2):
        plain = client.messages.create(model="claude-sonnet-4-6", max_tokens=5,
                                       system=deterministic_text("s", 2000), messages=[{"role": "user", "content": "hi"}])
    assert plain.usage.cache_read_input_tokens == plain.usage.cache_creation_input_tokens == 0
    short = [{"type": "text", "text": deterministic_text("s", 900), "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        r = client.messages.create(model="claude-sonnet-4-6", max_tokens=5, system=short,
                                   messages=[{"role": "user", "content": "hi"}])
    assert r.usage.cache_read_input_tokens == r.usage.cache_creation_input_tokens == 0
    haiku = [{"type": "text", "text": deterministic_text("s", 1500), "cache_control": {"type": "ephemeral"}}]
    r = client.messages.create(model="claude-haiku-4-5", max_tokens=5, system=haiku,
                               messages=[{"role": "user", "content": "hi"}])
    assert r.usage.cache_creation_input_tokens == 0   # Haiku 4.5's minimum is 4,096 tokens


def test_gemini_implicit_cache_and_thinking_within_max_output_tokens(fake):
    client = gemini_client(fake)
    prompt = deterministic_text("doc", 3000)
    config = types.GenerateContentConfig(max_output_tokens=100, thinking_config=types.ThinkingConfig(thinking_budget=64))
    first = client.models.generate_content(model="gemini-2.5-flash", contents=prompt, config=config).usage_metadata
    second = client.models.generate_content(model="gemini-2.5-flash", contents=prompt, config=config).usage_metadata
    assert first.prompt_token_count == count_messages([{"parts": [{"text": prompt}]}], "gemini-2.5-flash", "google")
    assert not first.cached_content_token_count
    assert second.cached_content_token_count >= 2048 and second.cached_content_token_count % 128 == 0
    assert 0 < second.thoughts_token_count <= 64
    assert second.candidates_token_count + second.thoughts_token_count <= 100
    assert second.total_token_count == (second.prompt_token_count + second.candidates_token_count
                                        + second.thoughts_token_count)
    pro = client.models.generate_content(model="gemini-2.5-pro", contents=prompt).usage_metadata
    pro = client.models.generate_content(model="gemini-2.5-pro", contents=prompt).usage_metadata
    assert pro.cached_content_token_count >= 2048   # 2.5 Pro's implicit minimum is 2,048 (was 4,096 before issue 14)
    short = deterministic_text("short", 2000)
    for model in ("gemini-2.5-flash", "gemini-3.1-pro-preview"):   # below 2,048; below 4,096
        for prompt_text in (short, short) if model == "gemini-2.5-flash" else (prompt, prompt):
            usage = client.models.generate_content(model=model, contents=prompt_text).usage_metadata
        assert not usage.cached_content_token_count


def test_scripted_failures_in_each_providers_shape(fake):
    fake.fail_next(1, 429, retry_after_s=2)
    with pytest.raises(openai.RateLimitError) as oe:
        openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert oe.value.response.headers["retry-after"] == "2"
    fake.fail_next(1, 529)
    with pytest.raises(anthropic.InternalServerError) as ae:
        anthropic_client(fake).messages.create(model="claude-sonnet-4-6", max_tokens=5,
                                               messages=[{"role": "user", "content": "x"}])
    assert ae.value.status_code == 529 and ae.value.body["error"]["type"] == "overloaded_error"
    fake.fail_next(1, 503, provider="google")
    client = gemini_client(fake)   # keep a reference: a collected genai.Client closes its connection
    with pytest.raises(genai.errors.ServerError) as ge:
        client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert ge.value.code == 503 and ge.value.status == "UNAVAILABLE"
    # the next call succeeds: each failure is used once
    assert openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert [c["status"] for c in fake.calls] == [429, 529, 503, 200]


def test_failures_scripted_for_one_provider_skip_the_others(fake):
    fake.fail_next(1, 500, provider="anthropic")
    assert openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client(fake).messages.create(model="claude-sonnet-4-6", max_tokens=5,
                                               messages=[{"role": "user", "content": "x"}])


def test_admin_endpoint_and_header_script_failures(fake):
    status, _, stats = post(f"{fake.url}/_fake/fail", {"count": 2, "status": 429, "retry_after_s": 0.5})
    assert status == 200 and stats["scripted_failures_left"] == 2
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    auth = {"authorization": f"Bearer {KEY}"}
    for _ in range(2):
        status, headers, error = post(f"{fake.url}/v1/chat/completions", body, auth)
        assert status == 429 and headers["retry-after"] == "0.5" and error["error"]["code"] == "rate_limit_exceeded"
    assert post(f"{fake.url}/v1/chat/completions", body, auth)[0] == 200
    status, _, error = post(f"{fake.url}/v1/chat/completions", body, {**auth, FAIL_HEADER: "503; retry-after=1"})
    assert status == 503
    # through an SDK, with the header on the client
    client = openai_client(fake, default_headers={FAIL_HEADER: "500"})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    post(f"{fake.url}/_fake/reset", {})
    with urllib.request.urlopen(f"{fake.url}/_fake/stats", timeout=5) as r:
        assert json.loads(r.read())["calls"] == 0


def test_requests_without_a_key_or_with_bad_fields_are_refused(fake):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    status, _, error = post(f"{fake.url}/v1/chat/completions", body)
    assert status == 401 and error["error"]["code"] == "invalid_api_key"
    status, _, error = post(f"{fake.url}/v1/messages", {"model": "claude-sonnet-4-6", "messages": body["messages"]},
                            {"x-api-key": KEY})
    assert status == 400 and "max_tokens" in error["error"]["message"]
    status, _, _ = post(f"{fake.url}/v1beta/models/gemini-2.5-flash:generateContent", {"contents": []},
                        {"x-goog-api-key": KEY})
    assert status == 400
    assert post(f"{fake.url}/v1/embeddings", body, {"authorization": f"Bearer {KEY}"})[0] == 404


def test_latency_is_configurable(fake):
    client = openai_client(fake)
    messages = [{"role": "user", "content": "x"}]
    fake.configure(latency_ms=150, ms_per_output_token=2)
    started = time.perf_counter()
    r = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_completion_tokens=20)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert r.usage.completion_tokens == 20
    assert elapsed_ms >= 150 + 2 * 20
    post(f"{fake.url}/_fake/config", {"latency_ms": 0, "ms_per_output_token": 0})
    assert fake.latency_ms == 0


def test_reply_text_depends_on_model_and_prompt():
    assert reply_text("gpt-4o-mini", "a") != reply_text("gpt-4o-mini", "b")
    assert reply_text("gpt-4o-mini", "a") != reply_text("gpt-4o", "a")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=200),
       max_tokens=st.integers(1, 120))
def test_no_answer_bills_more_output_than_max_tokens(fake, prompt, max_tokens):
    """A real API never bills more output tokens than max_tokens; the fake once billed one over,
    when a cut at the max_tokens-th word still held a word of two tokens."""
    messages = [{"role": "user", "content": prompt}]
    chat = openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=max_tokens)
    assert chat.usage.completion_tokens <= max_tokens
    assert chat.usage.completion_tokens == count_tokens(chat.choices[0].message.content, "gpt-4o-mini")
    message = anthropic_client(fake).messages.create(model="claude-haiku-4-5", messages=messages,
                                                     max_tokens=max_tokens)
    assert message.usage.output_tokens <= max_tokens
    client = gemini_client(fake)            # held: a client collected mid-call closes its connection
    gemini = client.models.generate_content(
        model="gemini-2.5-flash", contents=prompt, config=types.GenerateContentConfig(max_output_tokens=max_tokens))
    meta = gemini.usage_metadata
    assert (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0) <= max_tokens
