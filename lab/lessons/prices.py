"""What one call costs: price sheets, token counts, and the worst case a live session reserves (lessons 01, 12).

Prices come from genai-prices through `lab.pricing`; tokens are counted with tiktoken offline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lab.errors import ConfigError
from lab.live import Session
from lab.pricing import model_prices
from lab.providers.sdk import Chat
from lab.tokens import count_tokens, deterministic_text

#: models of the three providers that lesson 01 compares (provider/model as genai-prices names them)
LESSON_MODELS = ("openai/gpt-4o-mini", "openai/gpt-4.1", "anthropic/claude-haiku-4-5",
                 "anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash", "google/gemini-2.5-flash-lite")

#: lesson 12's one prompt: a support question, short enough to price by hand
LIVE_PROMPT = ("You are a support assistant for an online bookshop. A customer writes: my order of three "
               "paperbacks arrived with one book missing and the parcel was damaged. What should I do, and "
               "will I get a refund for the shipping cost? Answer in a friendly, concise way.")


def split_model(model: str) -> tuple[str, str]:
    """"openai/gpt-4o-mini" -> ("openai", "gpt-4o-mini")."""
    if "/" not in model:
        raise ConfigError(f"model {model!r}: expected provider/model, e.g. 'openai/gpt-4o-mini'")
    provider, name = model.split("/", 1)
    return provider, name


def price_sheet(models=LESSON_MODELS) -> pd.DataFrame:
    """USD per million tokens from genai-prices: input, cached input, cache write, output, batch."""
    rows = {}
    for m in models:
        d = model_prices(*split_model(m)).describe()
        rows[m] = {"input": d["input_usd_per_mtok"], "cached_input": d["cached_input_usd_per_mtok"],
                   "cache_write": d["cache_write_usd_per_mtok"], "output": d["output_usd_per_mtok"],
                   "batch_input": d["batch_input_usd_per_mtok"], "batch_output": d["batch_output_usd_per_mtok"]}
    frame = pd.DataFrame(rows).T.astype(float)
    frame.index.name = "USD per million tokens"
    return frame


def call_cost_usd(model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
                  batch: bool = False) -> float:
    """What one call costs on `model` ("provider/model"), priced by genai-prices' numbers."""
    prices = model_prices(*split_model(model))
    if batch:
        if prices.batch is None:
            raise ConfigError(f"{model}: genai-prices has no batch prices for it")
        prices = prices.batch
    return float(prices.cost_usd(np.array([input_tokens]), np.array([output_tokens]),
                                 np.array([cached_input_tokens]))[0])


def call_costs(input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, models=LESSON_MODELS) -> pd.DataFrame:
    """One call's cost on each model: list price, with the cached prefix, and through the batch API."""
    rows = {m: {"list_usd": call_cost_usd(m, input_tokens, output_tokens),
                "cached_usd": call_cost_usd(m, input_tokens, output_tokens, cached_input_tokens),
                "batch_usd": call_cost_usd(m, input_tokens, output_tokens, batch=True)} for m in models}
    frame = pd.DataFrame(rows).T
    frame.index.name = f"{input_tokens:,} in ({cached_input_tokens:,} cached) + {output_tokens:,} out"
    return frame


def token_counts(texts: Mapping[str, str], model: str = "gpt-4o-mini") -> pd.DataFrame:
    """Tokens, characters and characters per token of each text (tiktoken, offline)."""
    rows = {}
    for label, text in texts.items():
        n = count_tokens(text, model)
        rows[label] = {"characters": len(text), "tokens": n, "chars_per_token": len(text) / n if n else math.nan}
    return pd.DataFrame(rows).T


def long_system_prompt(n_tokens: int = 2000) -> str:
    """A deterministic system prompt of about `n_tokens` tokens (long enough for provider prompt caches)."""
    return ("You are the support assistant of an online bookshop. Policies follow.\n"
            + deterministic_text("costlab-lesson-12-policies", n_tokens))


def worst_case_usd(model: str, prompt: str, max_tokens: int, system: str | None = None) -> float:
    """What a `lab.live.Session` reserves for one call before sending it: its worst-case cost in USD.

    The counted prompt (x 1.3 where the tokenizer is an estimate) at the input price plus
    `max_tokens` at the output price; nothing is sent.
    """
    provider, name = split_model(model)
    session = Session(budget_usd=0.0, base_url="http://127.0.0.1:9")    # never called: only counts
    body = session.adapter(provider).request(name, Chat.of(prompt, system), int(max_tokens))
    return session.worst_case_usd(provider, name, body, int(max_tokens), None)


def calls_table(calls) -> pd.DataFrame:
    """`CallResult`s as a table: tokens, cost and latency of each call."""
    cols = ["provider", "model", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
            "cost_usd", "latency_ms", "replayed"]
    return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in calls])
