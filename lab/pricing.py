"""Prices from `genai-prices`, turned into numpy arrays so a million requests price at once.

genai-prices is the source of truth (it is maintained and works offline). `ModelPrices`
copies one model's per-million-token prices out of it — input, cache read, cache write
(5 minute and 1 hour), output, each possibly tiered by total input tokens ("cliff" tiers:
crossing a threshold re-prices every token) — plus the batch-API variant when it has one.
Where the rule book (`lab.provider_rules`) says a model bills cache writes and genai-prices
carries no write price, the write price is the book's multiplier on input.
`cost_usd` prices arrays of usage with the same rules; tests check it against
`genai_prices.calc_price` on mixed usages. A model genai-prices cannot price is an error
that lists close names: the lab never guesses $0.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from genai_prices import Usage, calc_price, data_snapshot

from lab.errors import PricingError
from lab.provider_rules import cache_rules

#: provider ids the lab simulates, as genai-prices names them
PROVIDERS = ("openai", "anthropic", "google")

#: prices are read as of this instant, so runs are reproducible whatever today's date is
PRICE_DATE = datetime(2026, 11, 1, tzinfo=UTC)
#: requests priced at once (bounds the temporaries; the result does not depend on it)
PRICE_BLOCK = 1 << 16


@dataclass(frozen=True)
class Tiered:
    """USD per million tokens: `base`, or a tier's price once total input tokens exceed its start."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of(cls, value) -> Tiered | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return cls(float(value))
        return cls(float(value.base), tuple((int(t.start), float(t.price)) for t in value.tiers))

    def per_token(self, total_input_tokens: np.ndarray) -> np.ndarray:
        """Price per token (USD) for each request, chosen by its total input tokens."""
        out = np.full(np.shape(total_input_tokens), self.base / 1e6)
        for start, price in self.tiers:  # ascending: a later tier overrides an earlier one
            out = np.where(total_input_tokens > start, price / 1e6, out)
        return out


@dataclass(frozen=True)
class ModelPrices:
    """One model's prices as genai-prices states them (USD per million tokens)."""

    provider: str
    model: str
    input: Tiered
    output: Tiered
    cache_read: Tiered | None
    cache_write: Tiered | None
    cache_write_1h: Tiered | None
    context_window: int | None
    batch: ModelPrices | None = None

    def cost_usd(self, input_tokens, output_tokens, cached_input_tokens=0, cache_write_tokens=0,
                 *, write_1h: bool = False) -> np.ndarray:
        """Cost of each request. `input_tokens` is the total prompt, cache reads and writes included.

        Priced in blocks of `PRICE_BLOCK` requests: the same numbers element by element, without
        a dozen float64 temporaries the length of a million-request run.
        """
        n = np.shape(input_tokens)[0] if np.ndim(input_tokens) == 1 else 0
        if n > PRICE_BLOCK:
            cols = [np.broadcast_to(np.asarray(c), (n,)) for c in (input_tokens, output_tokens,
                                                                   cached_input_tokens, cache_write_tokens)]
            out = np.empty(n, dtype=np.float64)
            for a in range(0, n, PRICE_BLOCK):
                out[a:a + PRICE_BLOCK] = self.cost_usd(*(c[a:a + PRICE_BLOCK] for c in cols), write_1h=write_1h)
            return out
        inp = np.asarray(input_tokens, dtype=np.float64)
        out = np.asarray(output_tokens, dtype=np.float64)
        read = np.broadcast_to(np.asarray(cached_input_tokens, dtype=np.float64), inp.shape)
        write = np.broadcast_to(np.asarray(cache_write_tokens, dtype=np.float64), inp.shape)
        # a model without a cache-read (or write) price bills those tokens as plain input
        read_price = (self.cache_read or self.input).per_token(inp)
        write_tier = (self.cache_write_1h if write_1h else None) or self.cache_write or self.input
        uncached = inp - read - write
        return (uncached * self.input.per_token(inp) + read * read_price
                + write * write_tier.per_token(inp) + out * self.output.per_token(inp))

    def describe(self) -> dict:
        """Base prices per million tokens, for tables (`costlab models`)."""
        def base(t: Tiered | None):
            return None if t is None else t.base
        return {
            "provider": self.provider, "model": self.model,
            "input_usd_per_mtok": base(self.input), "cached_input_usd_per_mtok": base(self.cache_read),
            "cache_write_usd_per_mtok": base(self.cache_write), "output_usd_per_mtok": base(self.output),
            "batch_input_usd_per_mtok": base(self.batch.input) if self.batch else None,
            "batch_output_usd_per_mtok": base(self.batch.output) if self.batch else None,
            "long_context_tiers": bool(self.input.tiers),
            "context_window": self.context_window,
        }


def _snapshot():
    return data_snapshot.get_snapshot()


def known_models(provider: str) -> list[str]:
    """Model ids genai-prices knows for a provider."""
    for p in _snapshot().providers:
        if p.id == provider:
            return [m.id for m in p.models]
    return []


def _from_price(provider: str, model_id: str, p, context_window, batch=None) -> ModelPrices:
    if p.input_mtok is None or p.output_mtok is None:
        raise PricingError(f"genai-prices has no token prices for {provider}/{model_id}")
    return ModelPrices(provider, model_id, Tiered.of(p.input_mtok), Tiered.of(p.output_mtok),
                       Tiered.of(p.cache_read_mtok), Tiered.of(p.cache_write_mtok),
                       Tiered.of(p.cache_write_1h_mtok), context_window, batch)


SERVICE_TIERS = ("standard", "flex", "priority")


@functools.cache
def model_prices(provider: str, model: str, tier: str = "standard") -> ModelPrices:
    """Prices of `provider`/`model` (at a service tier), or a PricingError naming close model ids.

    "priority" uses genai-prices' priority variant; "flex" its flex variant, or else the
    batch prices (OpenAI prices Flex processing at Batch API rates). A tier the model does
    not offer is an error.
    """
    if tier != "standard":
        base = model_prices(provider, model)
        _, info = _snapshot().find_provider_model(model, None, provider, None)
        standard = info.get_prices(PRICE_DATE)
        variant = info.get_prices(PRICE_DATE, {"service_tier": tier})
        if variant != standard:
            return _from_price(provider, info.id, variant, info.context_window, base.batch)
        if tier == "flex" and base.batch is not None:
            return dataclasses.replace(base.batch, batch=base.batch)
        raise PricingError(f"genai-prices has no {tier!r} service-tier prices for {provider}/{model}")
    if provider not in PROVIDERS:
        hint = difflib.get_close_matches(provider, PROVIDERS, n=1)
        raise PricingError(f"unknown provider {provider!r}: expected one of {', '.join(PROVIDERS)}"
                           + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    try:
        _, info = _snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        close = difflib.get_close_matches(model, known_models(provider), n=4, cutoff=0.5)
        hint = f"; close names: {', '.join(close)}" if close else "; `costlab models` lists priced models"
        raise PricingError(f"genai-prices cannot price model {model!r} for provider {provider!r}{hint}") from None
    standard = info.get_prices(PRICE_DATE)
    batch_price = info.get_prices(PRICE_DATE, {"processing": "batch"})
    batch = None
    if batch_price is not standard and batch_price != standard:
        batch = _from_price(provider, info.id, batch_price, info.context_window)
    return _with_rule_book_writes(_from_price(provider, info.id, standard, info.context_window, batch))


def _with_rule_book_writes(prices: ModelPrices) -> ModelPrices:
    """Fill a missing cache-write price from the rule book's multiplier, for models that bill writes."""
    rules = cache_rules(prices.provider, prices.model)
    multiplier = rules.write_multiplier.get(rules.default_ttl)
    if prices.cache_write is not None or not (rules.write_charged and rules.supports_caching and multiplier):
        return prices
    scaled = Tiered(prices.input.base * multiplier, tuple((t, p * multiplier) for t, p in prices.input.tiers))
    return dataclasses.replace(prices, cache_write=scaled)


def price_usage_exact(provider: str, model: str, *, input_tokens: int, output_tokens: int,
                      cached_input_tokens: int = 0, cache_write_tokens: int = 0,
                      cache_write_1h_tokens: int = 0) -> float:
    """One call priced by genai-prices itself (Decimal arithmetic), for checks and live calls."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                  cache_read_tokens=cached_input_tokens, cache_write_tokens=cache_write_tokens)
    if cache_write_1h_tokens:
        usage.cache_write_1h_tokens = cache_write_1h_tokens
    return float(calc_price(usage, model, provider_id=provider, genai_request_timestamp=PRICE_DATE).total_price)


def priced_models(providers=PROVIDERS) -> list[ModelPrices]:
    """Every model of the given providers that has token prices, sorted by provider and id."""
    out = []
    for provider in providers:
        for model_id in sorted(known_models(provider)):
            try:
                out.append(model_prices(provider, model_id))
            except PricingError:
                continue
    return out
