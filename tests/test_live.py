"""Live sessions through the three official SDKs, against the fake server on 127.0.0.1.

What is checked, and against what:
- cost = genai-prices on the very JSON the server sent back, and = the providers' published
  per-million-token prices applied by hand (cached tokens at the cache-read price, Anthropic
  cache writes at 1.25x / 2x input), on a first call and a cached repeat;
- a 429 / 529 / 503 is retried, waiting what Retry-After asks, and the call is billed once;
  other errors are not retried;
- the budget refuses exactly the call whose worst case would overshoot, and no real call
  ever costs more than its worst case;
- replay answers from the cassette with every socket blocked.
"""

from __future__ import annotations

import json
import math
import socket

import pytest
from genai_prices import extract_usage

from lab.errors import BudgetExceeded, ConfigError
from lab.live import Cassette, ReplayMiss, RetryPolicy, Session
from lab.pricing import PRICE_DATE, model_prices
from lab.providers.fake_server import FakeProviderServer
from lab.providers.sdk import KEY_ENV_VARS, ProviderError, scrub
from lab.tokens import count_messages, deterministic_text

FAKE_KEY = "sk-test-SECRET-123"
OPENAI, CLAUDE, GEMINI = ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6"), ("google", "gemini-2.5-flash")
SYSTEM = deterministic_text("support-policy", 2200)   # above every minimum used here (Gemini 2.5 Flash: 2,048)


@pytest.fixture
def fake():
    with FakeProviderServer(port=0) as server:
        yield server


@pytest.fixture(autouse=True)
def fake_keys(monkeypatch):
    for names in KEY_ENV_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, FAKE_KEY)


def block_all_sockets(monkeypatch):
    def refuse(self, address):
        raise OSError(f"network blocked in this test (tried {address!r})")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a[0] if a else None))


def by_hand_usd(provider: str, model: str, wire: dict) -> float:
    """The call's cost from the provider's usage block and its published per-million prices."""
    p = model_prices(provider, model)
    input_usd, output_usd = p.input.base / 1e6, p.output.base / 1e6
    read_usd = p.cache_read.base / 1e6
    if provider == "openai":
        u = wire["usage"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        return (u["prompt_tokens"] - cached) * input_usd + cached * read_usd + u["completion_tokens"] * output_usd
    if provider == "anthropic":
        u = wire["usage"]
        split = u["cache_creation"]
        return (u["input_tokens"] * input_usd + u["cache_read_input_tokens"] * read_usd
                + split["ephemeral_5m_input_tokens"] * p.cache_write.base / 1e6
                + split["ephemeral_1h_input_tokens"] * p.cache_write_1h.base / 1e6
                + u["output_tokens"] * output_usd)
    u = wire["usageMetadata"]
    cached = u.get("cachedContentTokenCount", 0)
    out = u["candidatesTokenCount"] + u.get("thoughtsTokenCount", 0)
    return (u["promptTokenCount"] - cached) * input_usd + cached * read_usd + out * output_usd


def genai_prices_usd(provider: str, wire: dict) -> float:
    flavor = "chat" if provider == "openai" else "default"
    return float(extract_usage(wire, provider_id=provider, api_flavor=flavor)
                 .calc_price(genai_request_timestamp=PRICE_DATE).total_price)


CASES = [
    pytest.param(*OPENAI, {}, id="openai"),
    pytest.param(*CLAUDE, {"cache": "5m"}, id="anthropic-5m"),
    pytest.param(*CLAUDE, {"cache": "1h"}, id="anthropic-1h"),
    pytest.param(*CLAUDE, {}, id="anthropic-uncached"),
    pytest.param(*GEMINI, {"thinking_budget_tokens": 48}, id="google-thinking"),
]


@pytest.mark.parametrize("provider,model,options", CASES)
def test_cost_is_genai_prices_on_the_usage_the_server_returned(fake, provider, model, options):
    session = Session(budget_usd=5.0, base_url=fake.base_urls())
    results, wires = [], []
    for question in ("Where is my order?", "Where is my order?"):
        results.append(session.call(provider, model, prompt=question, system=SYSTEM, max_tokens=64, **options))
        wires.append(fake.calls[-1]["response"])
    for result, wire in zip(results, wires):
        assert result.cost_usd == pytest.approx(genai_prices_usd(provider, wire), rel=1e-12)
        assert result.cost_usd == pytest.approx(by_hand_usd(provider, model, wire), rel=1e-9)
        assert result.output_tokens <= 64
    first, second = results
    if provider == "anthropic" and options:
        assert first.cache_write_tokens > 1800 and first.cached_input_tokens == 0
        assert second.cached_input_tokens == first.cache_write_tokens
        assert second.cost_usd < first.cost_usd
    elif provider == "anthropic":
        assert second.cached_input_tokens == second.cache_write_tokens == 0
    else:
        assert first.cached_input_tokens == 0 and second.cached_input_tokens >= 1024
        assert second.cost_usd < first.cost_usd
    assert first.input_tokens == second.input_tokens   # the whole prompt, cached part included
    assert session.spent_usd == pytest.approx(first.cost_usd + second.cost_usd, rel=1e-12)
    assert session.calls == 2


def test_openai_input_tokens_are_exact_tiktoken_counts(fake):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a token?"}]
    result = Session(budget_usd=1.0, base_url=fake.base_urls()).call(*OPENAI, messages, max_tokens=16)
    assert result.input_tokens == count_messages(messages, "gpt-4o-mini")
    assert result.output_tokens == 16 and result.text


@pytest.mark.parametrize("provider,model,status", [(*OPENAI, 429), (*CLAUDE, 529), (*GEMINI, 503), (*CLAUDE, 429)])
def test_a_retried_call_waits_retry_after_and_is_billed_once(fake, provider, model, status):
    sleeps = []
    session = Session(budget_usd=1.0, base_url=fake.base_urls(), sleep=sleeps.append, seed=1)
    fake.fail_next(1, status, retry_after_s=0.25)
    result = session.call(provider, model, prompt="Hello there", max_tokens=20)
    assert result.attempts == 2
    assert [c["status"] for c in fake.calls] == [status, 200]
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.25 * 1.1        # at least what Retry-After asked
    assert result.cost_usd == pytest.approx(genai_prices_usd(provider, fake.calls[-1]["response"]), rel=1e-12)
    assert session.spent_usd == result.cost_usd                            # billed once
    clean = Session(budget_usd=1.0, base_url=fake.base_urls()).call(provider, model, prompt="Hello there", max_tokens=20)
    assert result.cost_usd == clean.cost_usd


def test_retry_really_waits(fake):
    fake.fail_next(1, 429, retry_after_s=0.2)
    result = Session(budget_usd=1.0, base_url=fake.base_urls()).call(*OPENAI, prompt="hi", max_tokens=5)
    assert result.attempts == 2 and result.retry_wait_ms >= 200


def test_backoff_without_retry_after_doubles_with_jitter_and_gives_up(fake):
    sleeps = []
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=30.0)
    session = Session(budget_usd=1.0, base_url=fake.base_urls(), retry=policy, sleep=sleeps.append)
    fake.fail_next(10, 429)
    with pytest.raises(ProviderError) as error:
        session.call(*OPENAI, prompt="hi", max_tokens=5)
    assert error.value.status == 429 and "gave up after 4 attempts" in str(error.value)
    assert fake.calls_total() == 4 and len(sleeps) == 3
    for k, delay in enumerate(sleeps):
        assert 0.5 * 0.5 * 2 ** k <= delay <= 0.5 * 2 ** k
    assert session.spent_usd == 0.0 and session.calls == 0


@pytest.mark.parametrize("status", [400, 401, 404])
def test_other_client_errors_are_not_retried(fake, status):
    sleeps = []
    fake.fail_next(1, status)
    with pytest.raises(ProviderError) as error:
        Session(budget_usd=1.0, base_url=fake.base_urls(), sleep=sleeps.append).call(*CLAUDE, prompt="hi", max_tokens=5)
    assert error.value.status == status and fake.calls_total() == 1 and sleeps == []


def test_a_retry_after_beyond_the_cap_is_not_waited_for(fake):
    sleeps = []
    fake.fail_next(1, 429, retry_after_s=120)
    session = Session(budget_usd=1.0, base_url=fake.base_urls(), sleep=sleeps.append,
                      retry=RetryPolicy(max_delay_s=30))
    with pytest.raises(ProviderError) as error:
        session.call(*OPENAI, prompt="hi", max_tokens=5)
    assert error.value.retry_after_s == 120 and sleeps == [] and fake.calls_total() == 1


def test_budget_refuses_exactly_the_call_that_could_overshoot(fake):
    prompt, max_tokens = "Summarize our refund policy.", 500
    prices = model_prices(*OPENAI)
    prompt_tokens = count_messages([{"role": "user", "content": prompt}], "gpt-4o-mini")
    worst_usd = prompt_tokens * prices.input.base / 1e6 + max_tokens * prices.output.base / 1e6
    too_small = Session(budget_usd=worst_usd * (1 - 1e-6), base_url=fake.base_urls())
    with pytest.raises(BudgetExceeded, match="refused"):
        too_small.call(*OPENAI, prompt=prompt, max_tokens=max_tokens)
    assert fake.calls_total() == 0 and too_small.refused == 1 and too_small.spent_usd == 0
    enough = Session(budget_usd=worst_usd, base_url=fake.base_urls())
    first = enough.call(*OPENAI, prompt=prompt, max_tokens=max_tokens)
    assert 0 < first.cost_usd <= worst_usd
    with pytest.raises(BudgetExceeded):   # spent + the same worst case > budget
        enough.call(*OPENAI, prompt=prompt, max_tokens=max_tokens)
    assert fake.calls_total() == 1
    assert enough.call(*OPENAI, prompt=prompt, max_tokens=1).output_tokens == 1   # a smaller call still fits
    assert enough.spent_usd <= enough.budget_usd


@pytest.mark.parametrize("provider,model,options", CASES)
def test_no_call_costs_more_than_its_worst_case(fake, provider, model, options):
    session = Session(budget_usd=5.0, base_url=fake.base_urls())
    for _ in range(2):
        body = session._adapter(provider).request(model, _chat("Hello", SYSTEM), 300, **options)
        worst = session.worst_case_usd(provider, model, body, 300, options.get("cache"))
        result = session.call(provider, model, prompt="Hello", system=SYSTEM, max_tokens=300, **options)
        assert result.cost_usd <= worst


def _chat(prompt, system):
    from lab.providers.sdk import Chat
    return Chat.of(prompt, system)


def test_estimated_tokenizers_get_a_margin(fake):
    session = Session(budget_usd=5.0, base_url=fake.base_urls())
    body = session._adapter("anthropic").request("claude-sonnet-4-6", _chat("Hello", SYSTEM), 10)
    counted = count_messages(body["messages"], "claude-sonnet-4-6", "anthropic", system=SYSTEM)
    prices = model_prices(*CLAUDE)
    expected = math.ceil(counted * 1.3) * prices.input.base / 1e6 + 10 * prices.output.base / 1e6
    assert session.worst_case_usd(*CLAUDE, body, 10, None) == pytest.approx(expected, rel=1e-12)


def test_replay_answers_from_the_cassette_with_no_network(fake, tmp_path, monkeypatch):
    path = tmp_path / "calls.jsonl"
    live = Session(budget_usd=5.0, cassette=path, base_url=fake.base_urls())
    asked = [(OPENAI, {}), (CLAUDE, {"cache": "5m"}), (GEMINI, {}), (OPENAI, {}), (CLAUDE, {"cache": "5m"})]
    recorded = [live.call(*pm, prompt="Where is my order?", system=SYSTEM, max_tokens=32, **kw) for pm, kw in asked]
    assert len(Cassette(path).entries()) == len(asked)
    fake.stop()
    block_all_sockets(monkeypatch)
    for names in KEY_ENV_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)   # replay needs no key either
    replay = Session(budget_usd=5.0, cassette=path, mode="replay")
    replayed = [replay.call(*pm, prompt="Where is my order?", system=SYSTEM, max_tokens=32, **kw) for pm, kw in asked]
    for a, b in zip(recorded, replayed):
        assert b.replayed and not a.replayed
        assert (a.text, a.input_tokens, a.cached_input_tokens, a.cache_write_tokens, a.output_tokens, a.cost_usd,
                a.latency_ms) == (b.text, b.input_tokens, b.cached_input_tokens, b.cache_write_tokens,
                                  b.output_tokens, b.cost_usd, b.latency_ms)
    assert replayed[3].cached_input_tokens > 0   # the repeat replays as the cached call it was
    assert replay.spent_usd == pytest.approx(live.spent_usd, rel=1e-12)
    with pytest.raises(ReplayMiss, match="no recorded openai/gpt-4o-mini call matches"):
        replay.call(*OPENAI, prompt="A question never asked", max_tokens=32)
    with pytest.raises(ReplayMiss):   # max_tokens is part of the request
        replay.call(*OPENAI, prompt="Where is my order?", system=SYSTEM, max_tokens=33)


def test_replay_reproduces_a_recorded_failure_and_a_missing_cassette_is_clear(fake, tmp_path):
    path = tmp_path / "c.jsonl"
    fake.fail_next(1, 400)
    with pytest.raises(ProviderError):
        Session(budget_usd=1.0, cassette=path, base_url=fake.base_urls()).call(*OPENAI, prompt="x", max_tokens=5)
    with pytest.raises(ProviderError, match="replayed.*400"):
        Session(budget_usd=1.0, cassette=path, mode="replay").call(*OPENAI, prompt="x", max_tokens=5)
    with pytest.raises(ConfigError, match="no such cassette"):
        Session(budget_usd=1.0, cassette=tmp_path / "missing.jsonl", mode="replay")
    with pytest.raises(ConfigError, match="needs a cassette"):
        Session(budget_usd=1.0, mode="replay")


def test_cassette_lines_are_whole_json_and_a_torn_last_line_is_skipped(fake, tmp_path):
    path = tmp_path / "c.jsonl"
    session = Session(budget_usd=1.0, cassette=path, base_url=fake.base_urls())
    for q in ("a", "b"):
        session.call(*OPENAI, prompt=q, max_tokens=5)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[0])
    assert {"key", "provider", "model", "request", "response", "text", "usage", "cost_usd", "latency_ms"} <= set(entry)
    assert entry["request"] == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}],
                                "max_completion_tokens": 5}
    with open(path, "a") as fh:
        fh.write('{"v": 1, "key": "abc", "provider": "ope')   # a crash mid-write
    assert len(Cassette(path).entries()) == 2
    path.write_text(lines[0] + "\nnot json\n" + lines[1] + "\n")
    with pytest.raises(ConfigError, match="line 2"):
        Cassette(path).entries()


@pytest.mark.parametrize("provider,variables", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                                                ("google", "GEMINI_API_KEY or GOOGLE_API_KEY")])
def test_a_missing_key_names_its_variable(monkeypatch, provider, variables):
    for names in KEY_ENV_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    model = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.5-flash"}[provider]
    session = Session(budget_usd=1.0, base_url="https://api.example.invalid")
    with pytest.raises(ConfigError) as error:
        session.call(provider, model, prompt="hi", max_tokens=5)
    assert str(error.value).startswith(f"{variables} is not set")
    assert session.spent_usd == 0 and session._reserved_usd == 0


def test_google_api_key_is_read_when_gemini_api_key_is_unset(fake, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", FAKE_KEY)
    assert Session(budget_usd=1.0, base_url=fake.base_urls()).call(*GEMINI, prompt="hi", max_tokens=5).text


def test_bad_arguments_are_config_errors(fake):
    session = Session(budget_usd=1.0, base_url=fake.base_urls())
    with pytest.raises(ConfigError, match="Anthropic"):
        session.call(*OPENAI, prompt="hi", cache="5m")
    with pytest.raises(ConfigError, match="google only"):
        session.call(*CLAUDE, prompt="hi", thinking_budget_tokens=10)
    with pytest.raises(ConfigError, match="max_tokens"):
        session.call(*OPENAI, prompt="hi", max_tokens=0)
    with pytest.raises(ConfigError, match="messages"):
        session.call(*OPENAI, [{"role": "robot", "content": "hi"}])
    with pytest.raises(ConfigError, match="budget_usd"):
        Session(budget_usd=-1)
    with pytest.raises(ConfigError, match="provider"):
        session.call("mistral", "large", prompt="hi")
    assert fake.calls_total() == 0


def test_scrub_removes_keys_in_every_shape():
    text = (f"Incorrect API key provided: {FAKE_KEY}. url=https://x/v1?key=AIzaSyA-1234567890abcdef "
            "Authorization: Bearer sk-proj-abcdefghijkl api_key='sk-ant-api03-zzzzzzzz'\nnext line")
    clean = scrub(text, (FAKE_KEY,))
    assert FAKE_KEY not in clean and "AIzaSy" not in clean and "sk-proj" not in clean and "sk-ant" not in clean
    assert "\n" not in clean and "[redacted]" in clean


@pytest.mark.parametrize("provider,model,system_tokens,cache,writes", [
    ("openai", "gpt-5.6-terra", 3000, None, True),        # GPT-5.6+ writes unasked, at 1.25x (OpenAI guide)
    ("openai", "gpt-4o-mini", 3000, None, False),         # earlier models bill no writes
    ("anthropic", "claude-sonnet-4-6", 3000, "5m", True),
    ("anthropic", "claude-haiku-4-5", 2000, "5m", False),  # 2,000 x 1.3 margin < 4,096: nothing can be written
])
def test_worst_case_writes_only_where_the_rule_book_allows(fake, provider, model, system_tokens, cache, writes):
    # issue 14: the spend cap reads the same rules as the simulation (lab/data/provider_rules.toml)
    session = Session(budget_usd=5.0, base_url=fake.base_urls())
    system = deterministic_text("policy", system_tokens)
    options = {"cache": cache} if cache else {}
    body = session._adapter(provider).request(model, _chat("Hello", system), 10, **options)
    counted = session._adapter(provider).input_tokens_estimate(body)
    prompt = counted if provider == "openai" else math.ceil(counted * 1.3)
    prices = model_prices(provider, model)
    in_price = (prices.cache_write if writes else prices.input).base / 1e6
    expected = prompt * in_price + 10 * prices.output.base / 1e6
    assert session.worst_case_usd(provider, model, body, 10, cache) == pytest.approx(expected, rel=1e-12)
