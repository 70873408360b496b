"""Lesson 14's calls: a support assistant's conversations, and each token-analyzer suggestion applied to them.

The calls are what an application logs (system prompt, chat history, the user's turn, tool
definitions, the answer), built from deterministic texts so every count is reproducible.
`apply(calls, action)` makes the change a suggestion names, so re-analyzing the changed calls
measures its saving instead of trusting the estimate.
"""

from __future__ import annotations

import numpy as np

from lab.errors import ConfigError
from lab.lessons.prices import long_system_prompt
from lab.tokens import count_tokens, deterministic_text

#: a support bot's tool definitions (counted as their compact JSON)
SUPPORT_TOOLS = [
    {"type": "function", "function": {"name": "lookup_order", "description": "Find an order by its number",
                                      "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "start_return", "description": "Open a return for an order line",
                                      "parameters": {"type": "object", "properties": {
                                          "order_id": {"type": "string"}, "line": {"type": "integer"}}}}},
]


def support_calls(conversations: int = 12, turns: int = 8, *, system_tokens: int = 1500, seed: int = 0,
                  repeated_share: float = 0.2) -> list[dict]:
    """Calls of `conversations` chats of up to `turns` turns: each turn resends the system prompt and history.

    A `repeated_share` of the first turns ask a question someone asked before, word for word.
    Answers are mostly short with a long tail, as support answers are.
    """
    rng = np.random.default_rng(seed)
    system = long_system_prompt(system_tokens)
    calls = []
    for c in range(conversations):
        history: list[dict] = []
        for t in range(int(rng.integers(2, turns + 1))):
            faq = t == 0 and rng.random() < repeated_share
            if faq:                              # one of three frequent questions, word for word
                k = int(rng.integers(3))
                question = deterministic_text(f"faq-{k}", 30 + 10 * k)
            else:
                question = deterministic_text(f"q-{seed}-{c}-{t}", int(rng.integers(20, 80)))
            answer_tokens = int(min(1500, rng.lognormal(np.log(180), 0.7)))
            answer = deterministic_text(f"a-{seed}-{c}-{t}", answer_tokens)
            calls.append({"name": f"chat {c + 1} turn {t + 1}", "system": system, "tools": SUPPORT_TOOLS,
                          "messages": [*history, {"role": "user", "content": question}], "output": answer})
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return calls


def apply(calls: list[dict], action: str, *, history_tokens: int = 1000, max_tokens: int | None = None,
          model: str | None = None) -> list[dict]:
    """The calls after the change a suggestion names (its `action`), ready to re-analyze.

    - "cache repeated responses": a repeat of an earlier prompt is answered by the cache (dropped: no call);
    - "trim history": only the most recent turns up to about `history_tokens` are resent;
    - "cap max_tokens": answers end at `max_tokens` tokens (the analyzer's 95th percentile if not given);
    - "route to a cheaper model": every call goes to `model`.
    "cache the system prompt" changes the bill, not the calls: its price is the analyzer's own estimate.
    """
    if action == "cache repeated responses":
        seen, kept = set(), []
        for call in calls:
            key = (call.get("system"), repr(call.get("messages")), call.get("model"))
            if key not in seen:
                seen.add(key)
                kept.append(call)
        return kept
    if action == "trim history":
        out = []
        for call in calls:
            *history, last = call["messages"]
            kept, used = [], 0
            for m in reversed(history):
                used += count_tokens(m["content"])
                if used > history_tokens:
                    break
                kept.insert(0, m)
            out.append({**call, "messages": [*kept, last]})
        return out
    if action == "cap max_tokens":
        if max_tokens is None:
            max_tokens = int(np.ceil(np.percentile([count_tokens(c["output"]) for c in calls], 95)))
        return [{**{k: v for k, v in c.items() if k != "output"}, "max_tokens": max_tokens,
                 "output_tokens": min(count_tokens(c["output"]), max_tokens)} for c in calls]
    if action == "route to a cheaper model":
        if not model:
            raise ConfigError("route to a cheaper model: give the model to route to (model=...)")
        return [{**c, "model": model} for c in calls]
    raise ConfigError(f"apply: no way to apply {action!r}; expected 'cache repeated responses', 'trim history', "
                      "'cap max_tokens' or 'route to a cheaper model'")
