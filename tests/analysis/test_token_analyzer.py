"""Token analyzer: parts add up to the chat token count, costs and savings priced by hand.

Token counts come from lab.tokens (tiktoken, OpenAI cookbook framing: 3 tokens per message
plus 3 priming the reply); prices from genai-prices via lab.pricing.
"""

from __future__ import annotations

import json

import pytest

from lab.analysis.token_analyzer import analyze_calls
from lab.errors import ConfigError
from lab.pricing import model_prices
from lab.tokens import count_messages, count_tokens

SYSTEM = "You are the support assistant of ACME. Answer briefly and politely. " * 100   # ~1,400 tokens
TOOLS = [{"type": "function", "function": {"name": "order_status", "parameters": {"type": "object",
          "properties": {"order_id": {"type": "string"}}}}}]


def chat(history_turns: int, question: str) -> list[dict]:
    msgs = []
    for k in range(history_turns):
        msgs += [{"role": "user", "content": f"Earlier question {k}: " + "where is my parcel? " * 60},
                 {"role": "assistant", "content": "It is on its way, tracking says tomorrow. " * 50}]
    return msgs + [{"role": "user", "content": question}]


def test_parts_add_up_to_the_chat_token_count():
    msgs = [{"role": "system", "content": SYSTEM}] + chat(1, "Can I return it?")
    report = analyze_calls([{"messages": msgs, "tools": TOOLS, "output": "Yes, within 30 days."}], model="gpt-4o-mini")
    row = report.calls.iloc[0]
    assert row.system_tokens == count_tokens(SYSTEM, "gpt-4o-mini")
    assert row.user_tokens == count_tokens("Can I return it?", "gpt-4o-mini")
    assert row.history_tokens == sum(count_tokens(m["content"], "gpt-4o-mini") for m in msgs[1:3])
    assert row.framing_tokens == 3 * 4 + 4 + 3     # four messages: 3 each, their role names (1 token each), 3 priming
    assert row.tools_tokens == count_tokens(json.dumps(TOOLS, separators=(",", ":"), sort_keys=True), "gpt-4o-mini")
    assert row.input_tokens == count_messages(msgs, "gpt-4o-mini") + row.tools_tokens
    parts = row.system_tokens + row.history_tokens + row.user_tokens + row.tools_tokens + row.framing_tokens
    assert parts == row.input_tokens
    assert row.output_tokens == count_tokens("Yes, within 30 days.", "gpt-4o-mini")
    price = model_prices("openai", "gpt-4o-mini")
    assert row.cost_usd == pytest.approx(float(price.cost_usd([row.input_tokens], [row.output_tokens])[0]), rel=1e-12)
    by_part = report.by_part()
    assert by_part["cost_usd"].sum() == pytest.approx(row.cost_usd, rel=1e-12)
    assert by_part["tokens"].sum() == row.input_tokens + row.output_tokens


@pytest.fixture(scope="module")
def ten_calls():
    """Ten gpt-4o-mini calls sharing one system prompt; five with 4 turns of history; two repeats."""
    calls = [{"system": SYSTEM, "messages": chat(4 if k % 2 else 0, f"Question number {k % 8}?"),
              "output_tokens": 100 + 20 * k, "max_tokens": 1000, "name": f"c{k}"} for k in range(10)]
    return calls, analyze_calls(calls, model="gpt-4o-mini", history_budget_tokens=1000, calls_per_month=1e6)


def test_suggestion_savings_by_hand(ten_calls):
    calls, report = ten_calls
    frame = report.calls
    price_in, price_read = 0.15e-6, 0.075e-6                      # gpt-4o-mini: input, cached input per token
    by_action = {s.action: s for s in report.suggestions}
    # cache the system prompt: OpenAI caches in 128-token steps, no write fee; 9 calls reuse it
    sys_tokens = int(frame.system_tokens.iloc[0])
    cached = sys_tokens // 128 * 128
    assert by_action["cache the system prompt"].saving_usd == pytest.approx(9 * cached * (price_in - price_read), rel=1e-9)
    # trim history to 1,000 tokens on the five calls that carry 4 turns
    excess = (frame.history_tokens - 1000).clip(lower=0)
    assert by_action["trim history"].saving_usd == pytest.approx(float(excess.sum()) * price_in, rel=1e-9)
    assert by_action["trim history"].calls_affected == 5
    # calls 8 and 9 repeat the prompts of calls 0 and 1 exactly: a response cache answers them
    assert by_action["cache repeated responses"].calls_affected == 2
    assert by_action["cache repeated responses"].saving_usd == pytest.approx(frame.cost_usd.iloc[8:].sum(), rel=1e-12)
    # ranked by saving, biggest first
    savings = [s.saving_usd for s in report.suggestions]
    assert savings == sorted(savings, reverse=True)
    table = report.suggestions_table()
    assert list(table.index) == list(range(1, len(savings) + 1))
    assert table["saving_usd_per_month"].iloc[0] == pytest.approx(savings[0] * 1e6 / 10)
    # costliest calls first
    top = report.top_calls(3)
    assert list(top.cost_usd) == sorted(frame.cost_usd, reverse=True)[:3]


def test_anthropic_prefix_cache_pays_the_write_premium_once():
    calls = [{"system": SYSTEM, "messages": [{"role": "user", "content": f"q{k}"}], "output_tokens": 50}
             for k in range(4)]
    report = analyze_calls(calls, model="claude-sonnet-4-5", provider="anthropic")
    s = next(s for s in report.suggestions if s.action == "cache the system prompt")
    tokens = int(report.calls.system_tokens.iloc[0])
    p = model_prices("anthropic", "claude-sonnet-4-5")
    read = (p.input.base - p.cache_read.base) / 1e6          # 3.00 - 0.30 per million
    write = (p.cache_write.base - p.input.base) / 1e6        # 3.75 - 3.00 per million
    assert s.saving_usd == pytest.approx(3 * tokens * read - tokens * write, rel=1e-9)
    assert any("estimates" in n for n in report.notes)


def test_routing_suggests_the_cheapest_model_within_the_quality_margin():
    calls = [{"prompt": "Summarise this ticket: " + "blah " * 300, "output_tokens": 300} for _ in range(3)]
    report = analyze_calls(calls, model="gpt-4o")
    route = next(s for s in report.suggestions if s.action == "route to a cheaper model")
    assert "gpt-4o-mini" in route.detail                     # quality 0.70 vs 0.80: within 0.1; nano (0.62) is not
    mini = model_prices("openai", "gpt-4o-mini")
    cheaper = float(mini.cost_usd(report.calls.input_tokens, report.calls.output_tokens).sum())
    assert route.saving_usd == pytest.approx(report.calls.cost_usd.sum() - cheaper, rel=1e-9)


def test_bad_calls_are_refused_with_the_call_index():
    with pytest.raises(ConfigError, match="non-empty list"):
        analyze_calls([])
    with pytest.raises(ConfigError, match=r"calls\[1\]: expected 'messages'"):
        analyze_calls([{"prompt": "hi"}, {"output": "x"}])
