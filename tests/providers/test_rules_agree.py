"""Issue 14: the simulation and the fake server answer with the same usage, because both read the rule book.

A Sonnet 4.6 stream behind a 3,000-token system prompt is simulated, and the same calls (a
system prompt the fake server counts as 3,000 tokens, marked with `cache_control`, then one
question each) go through the official Anthropic SDK to the fake server on 127.0.0.1. Both
report one write of exactly 3,000 tokens, then reads of exactly 3,000 (Anthropic prompt-caching
page: "Marking a block with `cache_control` writes exactly one cache entry: a hash of the prefix
ending at that block"; Sonnet 4.6 minimum 1,024, "Cache limitations", Sep-2026 version).
The same for OpenAI's write-billing gpt-5.6-terra through the official OpenAI SDK (implicit
breakpoint at the end of the prompt: the same prompt repeated is written once, then read).
"""

from __future__ import annotations

import anthropic
import openai
import pytest
from helpers import scenario

import lab
from lab.providers.fake_server import FakeProviderServer
from lab.tokens import deterministic_text

CALLS = 5


@pytest.fixture
def fake():
    with FakeProviderServer(port=0) as server:
        yield server


def simulated(provider, model, prefix_tokens, body_tokens, **stage):
    s = scenario([{"stage": "prompt_cache", **stage}], requests=CALLS,
                 traffic={"arrivals": {"process": "poisson", "rate_per_s": 1.0},
                          "input_tokens": {"dist": "constant", "value": body_tokens},
                          "output_tokens": {"dist": "constant", "value": 20},
                          "prefix": {"system_tokens": prefix_tokens}, "prompts": {"catalog": 1}},
                 providers=[{"name": provider, "model": model, "concurrency": 1,
                             "latency_ms": {"dist": "constant", "value": 10}}])
    led = lab.simulate(s, seed=0, progress=False).ledger
    return list(led.cached_input_tokens), list(led.cache_write_tokens)


def test_sonnet_3000_token_prefix_simulation_and_sdk_agree(fake):
    sim_read, sim_written = simulated("anthropic", "claude-sonnet-4-6", 3000, 50)
    client = anthropic.Anthropic(api_key="sk-test", base_url=fake.base_url("anthropic"), max_retries=0)
    system = [{"type": "text", "text": deterministic_text("policy", 2997),   # + 3 framing tokens = 3,000
               "cache_control": {"type": "ephemeral"}}]
    read, written = [], []
    for k in range(CALLS):
        usage = client.messages.create(model="claude-sonnet-4-6", max_tokens=20, system=system,
                                       messages=[{"role": "user", "content": f"question {k}"}]).usage
        read.append(usage.cache_read_input_tokens)
        written.append(usage.cache_creation_input_tokens)
    assert written == sim_written == [3000] + [0] * (CALLS - 1)
    assert read == sim_read == [0] + [3000] * (CALLS - 1)


def test_openai_write_billing_model_simulation_and_sdk_agree(fake):
    client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url("openai"), max_retries=0)
    messages = [{"role": "system", "content": deterministic_text("policy", 3000)},
                {"role": "user", "content": "Where is my order?"}]
    read, written = [], []
    for _ in range(CALLS):
        usage = client.chat.completions.create(model="gpt-5.6-terra", messages=messages).usage
        read.append(usage.prompt_tokens_details.cached_tokens)
        written.append(usage.prompt_tokens_details.model_dump().get("cache_write_tokens"))
    prompt_tokens = usage.prompt_tokens
    sim_read, sim_written = simulated("openai", "gpt-5.6-terra", prompt_tokens - 20, 20, breakpoint="end")
    assert written == sim_written == [prompt_tokens] + [0] * (CALLS - 1)
    assert read == sim_read == [0] + [prompt_tokens] * (CALLS - 1)
