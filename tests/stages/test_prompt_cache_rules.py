"""Issue 14: the providers' own prompt-caching rules, worked examples priced by hand.

Every rule comes from the rule book (lab/data/provider_rules.toml); each test names the page it
follows. Per-million-token prices are read from genai-prices in the test (so a price change does
not break the arithmetic), and the bill is then computed by hand from the rule:
- Anthropic, https://platform.claude.com/docs/en/build-with-claude/prompt-caching ("Cache
  limitations": 4,096 tokens on Opus 4.5/4.6 and Haiku 4.5, 1,024 on Sonnet 4.5/4.6; "Cache
  writes happen only at your breakpoint ... exactly one cache entry: a hash of the prefix
  ending at that block"; writes 1.25x, reads 0.1x of input).
- OpenAI, https://developers.openai.com/api/docs/guides/prompt-caching ("For GPT-5.6 and later,
  cache writes cost 1.25x the standard, uncached input-token rate"; "Exact eligible boundary";
  earlier models: from 1,024 tokens in 128-token increments; GPT-5.5: implicit breakpoints
  "at regular 2,048-token intervals").
- Gemini, https://ai.google.dev/gemini-api/docs/caching (Oct 2026: 2.5 Flash and 2.5 Pro 2,048,
  3.1 Pro Preview 4,096) and .../pricing (2.5 Pro storage $4.50 per million tokens per hour).
"""

from __future__ import annotations

import pytest
from helpers import scenario

import lab
from lab.errors import CostlabError
from lab.pricing import model_prices

N = 6


def stream(provider, model, prefix_tokens, rules="auto", body_tokens=50, catalog=None, requests=N, **stage):
    """`requests` calls behind one `prefix_tokens` system prompt, one at a time, a second apart."""
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 1.0},
               "input_tokens": {"dist": "constant", "value": body_tokens},
               "output_tokens": {"dist": "constant", "value": 100},
               "prefix": {"system_tokens": prefix_tokens}}
    if catalog:
        traffic["prompts"] = {"catalog": catalog}
    s = scenario([{"stage": "prompt_cache", "rules": rules, **stage}], requests=requests, traffic=traffic,
                 providers=[{"name": provider, "model": model, "concurrency": 1,
                             "latency_ms": {"dist": "constant", "value": 100}}])
    return lab.simulate(s, seed=0, progress=False)


def usd(provider, model):
    """(input, cache read, cache write, output) in USD per token, from genai-prices."""
    p = model_prices(provider, model)
    return (p.input.base / 1e6, p.cache_read.base / 1e6, (p.cache_write.base / 1e6 if p.cache_write else None),
            p.output.base / 1e6)


# ------------------------------------------------------------------------------------ Anthropic


@pytest.mark.parametrize("model,prefix", [("claude-haiku-4-5", 3000), ("claude-opus-4-6", 2000),
                                          ("claude-haiku-4-5", 4095)])
def test_anthropic_below_4096_caches_nothing_on_haiku_45_and_opus_46(model, prefix):
    # Anthropic "Cache limitations": 4,096 tokens for Opus 4.6 / 4.5 and Haiku 4.5 (costlab said 2,048 / 1,024)
    r = stream("anthropic", model, prefix)
    led = r.ledger
    assert led.cached_input_tokens.sum() == 0 and led.cache_write_tokens.sum() == 0
    inp, _, _, out = usd("anthropic", model)
    assert r.summary()["cost_usd"] == pytest.approx(N * ((prefix + 50) * inp + 100 * out), rel=1e-12)
    assert r.summary()["cost_usd"] == pytest.approx(r.summary()["baseline_cost_usd"], rel=1e-12)


def test_anthropic_haiku_45_caches_from_4096():
    led = stream("anthropic", "claude-haiku-4-5", 4096).ledger
    assert list(led.cache_write_tokens) == [4096] + [0] * (N - 1)
    assert list(led.cached_input_tokens) == [0] + [4096] * (N - 1)


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4-6"])
def test_anthropic_3000_token_prefix_is_read_in_full_with_one_write(model):
    # the exact prefix up to the breakpoint: one write of 3,000, then reads of 3,000 (not 23 blocks
    # of 128 = 2,944 read + 56 re-written on every request, as costlab billed before)
    r = stream("anthropic", model, 3000, catalog=1000)
    led = r.ledger
    assert list(led.cache_write_tokens) == [3000] + [0] * (N - 1)
    assert list(led.cached_input_tokens) == [0] + [3000] * (N - 1)
    inp, read, write, out = usd("anthropic", model)
    assert write == pytest.approx(1.25 * inp) and read == pytest.approx(0.1 * inp)   # the page's multipliers
    first = 3000 * write + 50 * inp + 100 * out
    later = 3000 * read + 50 * inp + 100 * out
    assert list(led.cost_usd) == pytest.approx([first] + [later] * (N - 1), rel=1e-12)
    # Sonnet 4.5 at $3 / $3.75 / $0.30 / $15 per MTok: $0.0129 then $0.00255 a request
    if model == "claude-sonnet-4-5":
        assert first == pytest.approx(0.0129) and later == pytest.approx(0.00255)


def test_anthropic_two_breakpoints_write_only_the_new_tail():
    # "both": system prompt and end of prompt, as a chat marks them; a new question reads the
    # 3,000-token system entry and writes only its own 50-token tail; the same question again reads all
    r = stream("anthropic", "claude-sonnet-4-5", 3000, breakpoint="both", catalog=2, requests=12)
    led = r.ledger
    seen, body = set(), r.requests.prompt
    for k in range(len(led)):
        if k == 0:
            assert (led.cached_input_tokens[k], led.cache_write_tokens[k]) == (0, 3050)
        elif body[k] in seen:
            assert (led.cached_input_tokens[k], led.cache_write_tokens[k]) == (3050, 0)
        else:
            assert (led.cached_input_tokens[k], led.cache_write_tokens[k]) == (3000, 50)
        seen.add(body[k])


def test_anthropic_one_hour_write_is_twice_input():
    r = stream("anthropic", "claude-sonnet-4-5", 3000, anthropic_ttl="1h")
    p = model_prices("anthropic", "claude-sonnet-4-5")
    assert p.cache_write_1h.base == pytest.approx(2 * p.input.base)
    assert r.ledger.cost_usd[0] == pytest.approx((3000 * p.cache_write_1h.base + 50 * p.input.base
                                                  + 100 * p.output.base) / 1e6, rel=1e-12)


def test_anthropic_entry_expires_after_five_minutes():
    # "By default, the cache has a 5-minute lifetime": requests 10 minutes apart write every time
    s = scenario([{"stage": "prompt_cache"}], requests=3,
                 traffic={"arrivals": {"process": "poisson", "rate_per_s": 1 / 600},
                          "input_tokens": {"dist": "constant", "value": 50},
                          "prefix": {"system_tokens": 3000}},
                 providers=[{"name": "anthropic", "model": "claude-sonnet-4-5", "concurrency": 1,
                             "latency_ms": {"dist": "constant", "value": 100}}])
    led = lab.simulate(s, seed=0, progress=False).ledger
    gaps = led.t_arrival_s.diff().dropna()
    for k, gap in enumerate(gaps, start=1):
        assert led.cache_write_tokens[k] == (3000 if gap >= 300 else 0)


# ------------------------------------------------------------------------------------ OpenAI


def test_openai_write_priced_model_bills_its_writes():
    # gpt-5.6-terra: writes at 1.25x input, the exact boundary (an explicit breakpoint after the
    # system prompt), then reads at 0.1x: the worked example of provider_rules.md (issue 14)
    r = stream("openai", "gpt-5.6-terra", 3000, catalog=1000)
    led = r.ledger
    inp, read, write, out = usd("openai", "gpt-5.6-terra")
    assert write == pytest.approx(1.25 * inp) and read == pytest.approx(0.1 * inp)
    assert list(led.cache_write_tokens) == [3000] + [0] * (N - 1)
    assert list(led.cached_input_tokens) == [0] + [3000] * (N - 1)
    assert led.cost_usd[0] == pytest.approx(3000 * write + 50 * inp + 100 * out, rel=1e-12)
    assert led.cost_usd[1] == pytest.approx(3000 * read + 50 * inp + 100 * out, rel=1e-12)
    # $2.00 / $2.50 / $0.20 per MTok: the prefix's first write $0.0075, each later read $0.0006
    assert 3000 * write == pytest.approx(0.0075) and 3000 * read == pytest.approx(0.0006)


def test_openai_implicit_mode_rewrites_a_varying_prompt_every_time():
    # the guide's pitfall: implicit breakpoint at the end of the latest message, varying user
    # messages: every request writes its whole prompt (3,050 tokens) and none is read
    led = stream("openai", "gpt-5.6-terra", 3000, breakpoint="end", catalog=100000).ledger
    assert list(led.cache_write_tokens) == [3050] * N and led.cached_input_tokens.sum() == 0


def test_openai_earlier_models_128_token_increments_and_no_write_fee():
    led = stream("openai", "gpt-5.4", 3000, catalog=1000).ledger
    assert list(led.cached_input_tokens) == [0] + [1024 + 15 * 128] * (N - 1)     # 2,944
    assert led.cache_write_tokens.sum() == 0
    inp, read, _, out = usd("openai", "gpt-5.4")
    assert led.cost_usd[1] == pytest.approx(2944 * read + 106 * inp + 100 * out, rel=1e-12)


def test_openai_gpt55_breakpoints_every_2048_tokens():
    led = stream("openai", "gpt-5.5", 3000, catalog=1000).ledger
    assert list(led.cached_input_tokens) == [0] + [2048] * (N - 1)
    assert led.cache_write_tokens.sum() == 0


def test_openai_extended_retention_only_where_offered():
    r = stream("openai", "gpt-4.1", 3000, openai_retention="24h")
    assert r.stages[0].caches[0].ttl_s == 1800.0        # "typically ... around 30 minutes"
    with pytest.raises(CostlabError, match="openai_retention"):
        stream("openai", "gpt-4o-mini", 3000, openai_retention="24h")


# ------------------------------------------------------------------------------------ Gemini


@pytest.mark.parametrize("model,prefix,cached", [
    ("gemini-2.5-flash", 2000, 0),            # below 2,048
    ("gemini-2.5-flash", 3000, 2944),         # 23 whole 128-token blocks of the shared prompt
    ("gemini-2.5-pro", 3000, 2944),           # 2,048 (the Interactions page's 4,096 is the alternative)
    ("gemini-3.1-pro-preview", 3000, 0),      # 4,096
    ("gemini-3.1-pro-preview", 4200, 4096),
])
def test_gemini_implicit_minimums(model, prefix, cached):
    led = stream("google", model, prefix, catalog=1000).ledger
    assert list(led.cached_input_tokens) == [0] + [cached] * (N - 1)
    inp, read, _, out = usd("google", model)
    total = prefix + 50
    assert led.cost_usd[1] == pytest.approx(cached * read + (total - cached) * inp + 100 * out, rel=1e-12)


def test_gemini_explicit_cache_storage_per_hour_from_the_rule_book():
    r = stream("google", "gemini-2.5-pro", 3000, gemini_explicit=True)
    led = r.ledger
    inp, read, _, out = usd("google", "gemini-2.5-pro")
    hours = (r.requests.horizon_s - led.t_arrival_s[0] - led.queue_ms[0] / 1000) / 3600
    storage = 3000 / 1e6 * 4.50 * hours            # $4.50 per million tokens per hour (2.5 Pro)
    assert list(led.cached_input_tokens) == [3000] * N
    assert led.cost_usd[0] == pytest.approx(3000 * read + 50 * inp + 100 * out + 3000 * inp + storage, rel=1e-9)
    with pytest.raises(CostlabError, match="explicit"):
        stream("google", "gemini-4-argon", 5000, gemini_explicit=True)
