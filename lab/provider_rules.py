"""The provider rule book: prompt-caching minimums, increments, breakpoints, write charges, TTLs, storage.

One data file, `lab/data/provider_rules.toml`, holds every such rule with its source (URL and the
day it was read), the book's `as_of` date, and, where the providers' pages disagree, every value
found and the `choice` made. The prompt_cache stage, pricing, the live spend cap, the token
analyzer and the fake server all read the rules from here; per-token prices stay in genai-prices.

A model resolves to the first family of its provider whose `match` globs name its id (a
`provider/` prefix is stripped, case ignored); each provider's last family matches "*" and is
its default (OpenAI's states the rules of models before GPT-5.5; Anthropic's and Google's cover an
unlisted model and are marked `fallback`, reported as `CacheRules.fallback`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources

BOOK = "data/provider_rules.toml"
#: costlab's provider names -> the rule book's tables
PROVIDERS = ("openai", "anthropic", "google")
_TTL_KEY = re.compile(r"^ttl_(\w+)_s$")
_WRITE_KEY = re.compile(r"^write_multiplier_(\w+)$")


@dataclass(frozen=True)
class CacheRules:
    """One model's prompt-caching rules, as the rule book states them."""

    provider: str
    model: str
    family: str
    supports_caching: bool
    min_cacheable_tokens: int
    increment_tokens: int          # 0: the exact prefix up to a breakpoint; else cached tokens are multiples
    write_charged: bool            # cache writes are billed (at genai-prices' cache-write price)
    explicit_breakpoints: bool     # the request marks where the cached prefix ends
    max_breakpoints: int
    default_ttl: str
    ttl_s: dict[str, float] = field(default_factory=dict)             # retention option -> seconds
    write_multiplier: dict[str, float] = field(default_factory=dict)  # retention option -> x input price
    explicit_caching: bool = False                                    # Gemini explicit caches
    storage_usd_per_mtok_hour: float = 0.0
    extended_retention: bool = False                                  # OpenAI `prompt_cache_retention = "24h"`
    fallback: bool = False                                            # no family names the model
    as_of: dt.date | None = None

    def ttl_for(self, option: str | None = None) -> float:
        """Seconds an entry lives after its last use, for a retention option (default: the model's)."""
        option = option or self.default_ttl
        if option not in self.ttl_s:
            raise KeyError(f"{self.provider}/{self.model} has no {option!r} cache retention "
                           f"(it offers {', '.join(sorted(self.ttl_s))})")
        return self.ttl_s[option]


@functools.lru_cache(maxsize=1)
def book() -> dict:
    """The whole rule book as parsed TOML (facts are tables with value, source, read, quote ...)."""
    return tomllib.loads(resources.files("lab").joinpath(BOOK).read_text(encoding="utf-8"))


def as_of() -> dt.date:
    """The date the rule book states its rules as of."""
    return book()["as_of"]


def family_of(provider: str, model: str) -> dict:
    """The first family of `provider` whose `match` globs name `model`."""
    if provider not in PROVIDERS:
        raise KeyError(f"the rule book has no provider {provider!r} (it has {', '.join(PROVIDERS)})")
    mid = model.split("/", 1)[-1].lower()
    for fam in book()[provider]["family"]:
        if any(fnmatch.fnmatchcase(mid, pat) for pat in fam["match"]):
            return fam
    raise KeyError(f"no {provider} family matches {model!r}")   # unreachable: the last family is "*"


def fact(provider: str, model: str, key: str) -> dict | object | None:
    """The rule `key` for a model, family first, then provider: a fact table (value, source, ...) or a plain value."""
    fam = family_of(provider, model)
    return fam[key] if key in fam else book()[provider].get(key)


def _value(node, on: dt.date):
    if isinstance(node, dict) and "value" in node:
        until = node.get("until")
        return node["then_value"] if until is not None and on > until else node["value"]
    return node


@functools.cache
def cache_rules(provider: str, model: str, on: dt.date | None = None) -> CacheRules:
    """The prompt-caching rules for `provider`/`model`, with dated values read as of `on` (default: `as_of`)."""
    on = on or as_of()
    fam, top = family_of(provider, model), book()[provider]
    merged = {**top, **fam}

    def get(key, default=None):
        return _value(merged[key], on) if key in merged else default

    ttl = {m.group(1): float(_value(v, on)) for k, v in merged.items() if (m := _TTL_KEY.match(k))}
    writes = {m.group(1): float(_value(v, on)) for k, v in merged.items() if (m := _WRITE_KEY.match(k))}
    mid = model.split("/", 1)[-1].lower()
    extended = any(mid == m or mid.startswith(f"{m}-2") for m in merged.get("extended_retention_models", ()))
    if "24h" in ttl and fam.get("default_ttl") != "24h" and not extended:
        ttl.pop("24h")
    return CacheRules(
        provider=provider, model=model, family=fam["name"],
        supports_caching=bool(get("supports_caching", True)),
        min_cacheable_tokens=int(get("min_cacheable_tokens", 0)),
        increment_tokens=int(get("increment_tokens", 0)),
        write_charged=bool(get("write_charged", False)),
        explicit_breakpoints=bool(get("explicit_breakpoints", False)),
        max_breakpoints=int(get("max_breakpoints", 1)),
        default_ttl=str(get("default_ttl")), ttl_s=ttl, write_multiplier=writes,
        explicit_caching=bool(get("explicit_caching", False)),
        storage_usd_per_mtok_hour=float(get("storage_usd_per_mtok_hour", 0.0)),
        extended_retention=extended or fam.get("default_ttl") == "24h",
        fallback=bool(fam.get("fallback", False)), as_of=book()["as_of"])


def facts(node=None, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every fact table in the book (or under `node`), with its dotted path."""
    node = book() if node is None else node
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
        for key, child in node.items():
            yield from facts(child, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for k, child in enumerate(node):
            yield from facts(child, f"{path}[{k}]")
