"""Provider prompt caching: a provider reuses the leading part of a prompt it has seen.

The story: when a provider starts serving a request, it looks for the longest part of the
prompt, from the start, that it still holds in its prefix cache; that part is read from cache
at the cached-input price, the rest is computed (and, where the provider bills writes, written
to cache at a premium). Entries are evicted least recently used when `capacity_tokens` is set
and forgotten `ttl_s` after their last use.

A request's prefix structure is its blocks: Mooncake's `hash_ids` (512 tokens each) on a trace,
or, on generated traffic, the shared system prompt (`[traffic.prefix]`) followed by the prompt's
own text (the same prompt repeated is the same blocks).

Every number the rules use — minimums, increments, breakpoint limits, write multipliers, TTLs,
storage prices — comes from the rule book (`lab.provider_rules`, `lab/data/provider_rules.toml`,
each with its source); prices from genai-prices. Rules (`rules`):
- "ideal": every leading block seen before is read from cache; no minimum, no write cost.
- "openai", models before GPT-5.6: automatic prefix reuse from the model's minimum (1,024),
  counted in the model's increment (128 tokens; GPT-5.5's implicit breakpoints every 2,048);
  no write charge; in-memory retention (300 s) or `openai_retention = "24h"` where offered.
  GPT-5.6 and later bill writes: they cache at exact breakpoints like Anthropic (below) —
  `breakpoint = "prefix"` is an explicit breakpoint after the system prompt, "end" the implicit
  one at the end of the prompt — writes at 1.25x input, entries live 30 minutes.
- "anthropic": exact prefixes up to each `cache_control` breakpoint (`breakpoint` "prefix": the
  end of the system prompt; "end": the end of the prompt; "both": the two, as in a chat) — no
  token blocks. A breakpoint below the model's minimum (1,024 on most models, 4,096 on Opus
  4.5/4.6 and Haiku 4.5, ...) caches nothing. The longest fresh entry the prompt starts with is
  read (0.1x); only the tokens beyond it up to the breakpoint are written (1.25x for 5 minutes,
  2x with `anthropic_ttl = "1h"`), once: a hit writes nothing.
- "gemini": implicit caching from the model's minimum (2,048 on 2.5 Flash/Pro, 4,096 on 3.x),
  in 128-token blocks (Google documents no block size: an assumption), read at the cached price;
  or `gemini_explicit = true`: the system prompt is stored in an explicit cache, billed once as
  input and then per hour of storage (the rule book's storage price) over the simulated span.
- "auto" (default): the rules of the provider serving the request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from lab.config import Table
from lab.errors import ConfigError
from lab.provider_rules import CacheRules, cache_rules
from lab.stages.base import Options, Stage

NAME = "prompt_cache"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("ttl_s", "capacity_tokens")
RULES = ("auto", "ideal", "openai", "anthropic", "gemini")
PROVIDER_RULES = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}
BREAKPOINTS = ("prefix", "end", "both")
OPENAI_RETENTION = ("default", "24h")


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    rules: str = "auto"
    capacity_tokens: int | None = None
    ttl_s: float | None = None               # default: the rule book's, per model and retention
    breakpoint: str = "prefix"               # anthropic and write-billing openai: "prefix" | "end" | "both"
    anthropic_ttl: str = "5m"                # "5m" | "1h"
    openai_retention: str = "default"        # "default" | "24h" (extended retention, where offered)
    gemini_explicit: bool = False


def parse(t: Table) -> Config:
    return Config(rules=t.string("rules", Config.rules, choices=RULES),
                  capacity_tokens=t.integer("capacity_tokens", Config.capacity_tokens, min=1),
                  ttl_s=t.number("ttl_s", Config.ttl_s, min=0.0, strict_min=True),
                  breakpoint=t.string("breakpoint", Config.breakpoint, choices=BREAKPOINTS),
                  anthropic_ttl=t.string("anthropic_ttl", Config.anthropic_ttl, choices=("5m", "1h")),
                  openai_retention=t.string("openai_retention", Config.openai_retention, choices=OPENAI_RETENTION),
                  gemini_explicit=t.boolean("gemini_explicit", Config.gemini_explicit))


class PrefixCache:
    """One provider's cache of prompt blocks: LRU by tokens, entries expire `ttl_s` after last use.

    Blocks are all `block_tokens` long, so capacity is a block count; the store is a plain
    dict (unlimited) or an OrderedDict in use order (bounded), updated with C-level calls
    because a long prompt touches dozens of blocks.
    """

    def __init__(self, capacity_tokens: int | None, ttl_s: float | None, block_tokens: int):
        self.max_blocks = max(capacity_tokens // block_tokens, 0) if capacity_tokens else None
        self.blocks: dict = OrderedDict() if self.max_blocks is not None else {}
        self.ttl_s = ttl_s
        self.evictions = 0

    def leading_hits(self, blocks, now: float) -> int:
        """How many of `blocks`, from the first, are cached and fresh."""
        get, n = self.blocks.get, 0
        for b in blocks:
            expiry = get(b)
            if expiry is None or now >= expiry:
                break
            n += 1
        return n

    def remember(self, blocks, now: float) -> None:
        """All of the prompt's blocks are now cached, most recently used."""
        expiry = now + self.ttl_s if self.ttl_s is not None else float("inf")
        store = self.blocks
        if self.max_blocks is None:
            store.update(zip(blocks, repeat(expiry)))
            return
        move = store.move_to_end
        for b in blocks:
            store[b] = expiry
            move(b)
        while len(store) > self.max_blocks:
            store.popitem(last=False)
            self.evictions += 1


class EntryCache:
    """Cache entries at exact breakpoints (Anthropic, OpenAI GPT-5.6+): key -> (prefix tokens, expiry).

    An entry covers the exact prefix ending at one breakpoint; a later request reads the longest
    fresh entry its prompt starts with. Bounded by `capacity_tokens` (least recently used first).
    """

    def __init__(self, capacity_tokens: int | None, ttl_s: float | None):
        self.entries: OrderedDict = OrderedDict()
        self.capacity_tokens, self.ttl_s = capacity_tokens, ttl_s
        self.tokens = self.evictions = 0

    def tokens_at(self, key, now: float) -> int:
        """Prefix tokens of the fresh entry stored under `key` (0 when none)."""
        entry = self.entries.get(key)
        return entry[0] if entry is not None and now < entry[1] else 0

    def store(self, key, tokens: int, now: float) -> None:
        """Write (or refresh: a hit renews the lifetime at no charge) the entry under `key`."""
        expiry = now + self.ttl_s if self.ttl_s is not None else float("inf")
        old = self.entries.pop(key, None)
        if old is not None:
            self.tokens -= old[0]
        self.entries[key] = (tokens, expiry)
        self.tokens += tokens
        while self.capacity_tokens is not None and self.tokens > self.capacity_tokens and len(self.entries) > 1:
            _, (gone, _) = self.entries.popitem(last=False)
            self.tokens -= gone
            self.evictions += 1


class PromptCacheStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.caches: dict[int, PrefixCache] = {}
        self.entry_caches: dict[int, EntryCache] = {}
        req = sim.requests
        self.block_tokens = req.block_tokens or 128
        if config.anthropic_ttl == "1h":
            sim.cache_write_1h = True
        self.blocks_total = self.blocks_hit = 0
        self.explicit_created: set[tuple[int, int]] = set()
        self.storage_usd = 0.0
        #: each provider's rule book entry, looked up once
        self.book = [cache_rules(p.name, p.model) for p in sim.providers]
        for provider, rules in zip(sim.providers, self.book):
            if self.rules_for(provider) == "gemini" and config.gemini_explicit and not rules.explicit_caching:
                raise ConfigError(f"prompt_cache: gemini_explicit: {provider.model} has no explicit caches "
                                  f"(rule book family {rules.family!r}); use implicit caching")
            if (self.rules_for(provider) == "openai" and config.openai_retention != "default"
                    and config.openai_retention not in rules.ttl_s):
                raise ConfigError(f"prompt_cache: openai_retention: {provider.model} offers no "
                                  f"{config.openai_retention!r} retention (it has {', '.join(rules.ttl_s)})")

    def rules_for(self, provider) -> str:
        return PROVIDER_RULES[provider.name] if self.config.rules == "auto" else self.config.rules

    def at_breakpoints(self, rules: str, book: CacheRules) -> bool:
        """Whether the rules cache exact prefixes at breakpoints (and bill writes) rather than blocks."""
        return rules == "anthropic" or (rules == "openai" and book.write_charged)

    def ttl_of(self, rules: str, book: CacheRules) -> float | None:
        """The entry lifetime: the scenario's `ttl_s`, or the rule book's for the model and option."""
        if self.config.ttl_s is not None:
            return self.config.ttl_s
        option = {"ideal": None, "anthropic": self.config.anthropic_ttl, "gemini": "implicit",
                  "openai": None if self.config.openai_retention == "default" else self.config.openai_retention}
        if rules == "ideal":
            return None
        return book.ttl_s.get(option[rules] or book.default_ttl, book.ttl_for())

    def cache_for(self, provider, rules: str) -> PrefixCache:
        cache = self.caches.get(provider.index)
        if cache is None:
            ttl = self.ttl_of(rules, self.book[provider.index])
            cache = self.caches[provider.index] = PrefixCache(self.config.capacity_tokens, ttl, self.block_tokens)
        return cache

    def entries_for(self, provider, rules: str) -> EntryCache:
        cache = self.entry_caches.get(provider.index)
        if cache is None:
            ttl = self.ttl_of(rules, self.book[provider.index])
            cache = self.entry_caches[provider.index] = EntryCache(self.config.capacity_tokens, ttl)
        return cache

    def blocks_of(self, i: int) -> list[int]:
        """Block ids of request i's prompt, first to last."""
        req = self.sim.requests
        if req.block_ids is not None:
            return req.block_ids[req.block_offsets[i]:req.block_offsets[i + 1]].tolist()
        bt = self.block_tokens
        n_blocks = -(-int(self.sim.run.input_tokens[i]) // bt)
        prefix_id = int(req.prefix_id[i])
        n_prefix = int(req.prefix_tokens[i]) // bt if prefix_id >= 0 else 0
        ids = [-(prefix_id * 4096 + j) - 1 for j in range(min(n_prefix, n_blocks))]
        shared = req.context_key[i] if req.context_key is not None else req.prompt[i]   # a session's history
        body = (int(shared) * 64 + (prefix_id + 1)) * 4096
        ids.extend(body + j for j in range(n_blocks - len(ids)))
        return ids

    def on_start(self, i: int, provider) -> None:
        sim, run = self.sim, self.sim.run
        rules = self.rules_for(provider)
        book = self.book[provider.index]
        cache = self.cache_for(provider, rules)
        now = sim.env.now
        blocks = self.blocks_of(i)
        hit_blocks = cache.leading_hits(blocks, now)
        cache.remember(blocks, now)
        self.blocks_total += len(blocks)
        self.blocks_hit += hit_blocks
        input_tokens = int(run.input_tokens[i])
        if self.at_breakpoints(rules, book):
            cached, written = self.at_breakpoint(i, provider, rules, book, blocks, input_tokens)
        else:
            matched = min(hit_blocks * self.block_tokens, input_tokens)
            cached, written = self.implicit(rules, i, provider, book, matched, input_tokens)
        if cached or written:
            run.cached_input_tokens[i] = cached
            run.cache_write_tokens[i] = written
            self.touch(i)

    def breakpoints_of(self, i: int, blocks: list[int], input_tokens: int) -> list[tuple[object, int]]:
        """(entry key, prefix tokens) of request i's breakpoints, shortest first.

        The system prompt's entry is named by its variant (every request with it shares those
        tokens); the prompt's end by its last block (on a trace, its last full block: a trace's
        hashes cannot show that a partial block is the start of a later prompt's block) and its
        exact length.
        """
        req = self.sim.requests
        prefix_tokens = int(req.prefix_tokens[i]) if int(req.prefix_id[i]) >= 0 else 0
        at_prefix = (("system", int(req.prefix_id[i])), prefix_tokens)
        last = len(blocks) - 1
        if req.block_ids is not None:
            last = min(input_tokens // self.block_tokens, len(blocks)) - 1
        at_end = (("end", blocks[last] if last >= 0 else None), input_tokens)
        if not prefix_tokens or self.config.breakpoint == "end":
            return [at_end]
        if self.config.breakpoint == "prefix" or prefix_tokens >= input_tokens:
            return [at_prefix]
        return [at_prefix, at_end]

    def at_breakpoint(self, i: int, provider, rules: str, book: CacheRules, blocks: list[int],
                      input_tokens: int) -> tuple[int, int]:
        """(cached, written) under breakpoint rules: read the longest fresh entry, write the rest once.

        A breakpoint shorter than the model's minimum is not cached (nothing read or written).
        """
        entries, now = self.entries_for(provider, rules), self.sim.env.now
        points = [(k, t) for k, t in self.breakpoints_of(i, blocks, input_tokens)
                  if t >= book.min_cacheable_tokens and book.supports_caching][:book.max_breakpoints]
        if not points:
            return 0, 0
        cached, hit_key = 0, None
        for key, tokens in points:
            if entries.tokens_at(key, now) == tokens:
                cached, hit_key = tokens, key
        if cached == 0 and self.sim.requests.block_ids is not None:
            cached, hit_key = self._earlier_turn(entries, blocks, points[-1][1], now)
        upto = points[-1][1]
        if hit_key is not None:
            entries.store(hit_key, cached, now)
        for key, tokens in points:
            if tokens > cached:
                entries.store(key, tokens, now)
        return cached, upto - cached

    def _earlier_turn(self, entries: EntryCache, blocks: list[int], upto: int, now: float):
        """On a trace, the longest fresh end-of-prompt entry of an earlier turn this prompt extends.

        An earlier prompt is taken to be a prefix of this one when this one holds all of its full
        blocks (the breakpoint's lookback; Anthropic checks up to 20 content blocks back, which a
        trace of token blocks cannot count, so the whole prompt is searched).
        """
        for block in reversed(blocks):
            tokens = entries.tokens_at(("end", block), now)
            if 0 < tokens <= upto:
                return tokens, ("end", block)
        return 0, None

    def implicit(self, rules: str, i: int, provider, book: CacheRules, matched: int,
                 input_tokens: int) -> tuple[int, int]:
        """(cached, written) under automatic prefix reuse: the matched blocks, in the model's increments."""
        if rules == "ideal":
            return matched, 0
        prefix_tokens = int(self.sim.requests.prefix_tokens[i])
        minimum = book.min_cacheable_tokens
        if rules == "gemini" and self.config.gemini_explicit:
            if prefix_tokens < minimum:
                return 0, 0
            self._explicit_cache(i, provider, prefix_tokens)
            return prefix_tokens, 0
        if not book.supports_caching or input_tokens < minimum or matched < minimum:
            return 0, 0
        step = book.increment_tokens or 1
        cached = matched // step * step
        return (cached, 0) if cached >= minimum else (0, 0)

    def _explicit_cache(self, i: int, provider, prefix_tokens: int) -> None:
        """First use of a system prompt creates its explicit cache: input price once, then storage."""
        key = (provider.index, int(self.sim.requests.prefix_id[i]))
        if key in self.explicit_created:
            return
        self.explicit_created.add(key)
        prices = self.sim.price_of(provider)
        hours = max(self.sim.requests.horizon_s - self.sim.env.now, 0.0) / 3600.0
        storage = prefix_tokens / 1e6 * self.book[provider.index].storage_usd_per_mtok_hour * hours
        creation = float(prices.cost_usd(np.array([prefix_tokens]), np.array([0]))[0])
        self.storage_usd += storage
        self.sim.run.extra_cost_usd[i] += storage + creation

    def saved_usd(self, result) -> float:
        """Price without prompt caching minus price with it, over the requests it touched."""
        run = result.run
        saved = 0.0
        for provider in result.providers:
            mask = self.served_by(result, provider.index)
            if not mask.any():
                continue
            prices = self.sim.price_of(provider)
            full = prices.cost_usd(run.input_tokens[mask], run.output_tokens[mask])
            saved += float(full.sum() - run.cost_usd[mask].sum())
        return saved

    def stats(self) -> dict:
        return {"blocks": self.blocks_total, "blocks_hit": self.blocks_hit,
                "block_hit_ratio": self.blocks_hit / self.blocks_total if self.blocks_total else 0.0,
                "explicit_storage_usd": self.storage_usd,
                # which rule book and family each provider's numbers came from (a newer book can sit beside it)
                "rule_book_as_of": self.book[0].as_of.isoformat() if self.book else None,
                "rule_families": {f"{p.name}/{p.model}": r.family + (" (fallback: no rule names this model)"
                                                                   if r.fallback else "")
                                  for p, r in zip(self.sim.providers, self.book)}}


Stage = PromptCacheStage
