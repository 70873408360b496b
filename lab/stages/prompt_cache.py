"""Provider prompt caching: a provider reuses the leading blocks of a prompt it has seen.

The story: when a provider starts serving a request, it walks the prompt's blocks from
the start; every leading block still in that provider's prefix cache is read from cache,
the rest is computed (and, on Anthropic, written to cache at a premium). Then all of the
prompt's blocks are in the cache, evicted least recently used when `capacity_tokens` is
set and forgotten `ttl_s` after their last use.

Blocks are a request's prefix structure: Mooncake's `hash_ids` (512 tokens each) on a
trace, or, on generated traffic, the shared system prompt (`[traffic.prefix]`) followed
by the prompt's own text (the same prompt repeated is the same blocks).

Rules (`rules`), with prices from genai-prices:
- "ideal": every leading block seen before is read from cache; no minimum, no write cost.
- "openai": automatic for prompts of 1,024 tokens or more; cached tokens count in steps of
  128 after the first 1,024; reads at the model's cached-input price; no write charge.
  Entries live 5-10 minutes after last use (ttl 300 s here).
- "anthropic": an explicit breakpoint (`breakpoint` "prefix": end of the system prompt,
  or "end": end of the prompt); at least 1,024 tokens (2,048 on Haiku); tokens up to the
  breakpoint not read from cache are written at 1.25x the input price (5-minute TTL,
  refreshed on each hit) or 2x (`anthropic_ttl = "1h"`); reads cost 0.1x.
- "gemini": implicit caching from 1,024 tokens (Flash) / 4,096 (Pro), reads at the cached
  price; or `gemini_explicit = true`: the system prompt is stored in an explicit cache,
  billed once as input and then per hour of storage over the simulated span.
- "auto" (default): the rules of the provider serving the request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from lab.config import Table
from lab.stages.base import Options, Stage

NAME = "prompt_cache"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("ttl_s", "capacity_tokens")
RULES = ("auto", "ideal", "openai", "anthropic", "gemini")
PROVIDER_RULES = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}
DEFAULT_TTL_S = {"ideal": None, "openai": 300.0, "anthropic": 300.0, "gemini": 300.0}
OPENAI_MIN_TOKENS, OPENAI_STEP_TOKENS = 1024, 128


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    rules: str = "auto"
    capacity_tokens: int | None = None
    ttl_s: float | None = None               # default: the rules' own (see DEFAULT_TTL_S)
    breakpoint: str = "prefix"               # anthropic: "prefix" | "end"
    anthropic_ttl: str = "5m"                # "5m" | "1h"
    gemini_explicit: bool = False


def parse(t: Table) -> Config:
    return Config(rules=t.string("rules", Config.rules, choices=RULES),
                  capacity_tokens=t.integer("capacity_tokens", Config.capacity_tokens, min=1),
                  ttl_s=t.number("ttl_s", Config.ttl_s, min=0.0, strict_min=True),
                  breakpoint=t.string("breakpoint", Config.breakpoint, choices=("prefix", "end")),
                  anthropic_ttl=t.string("anthropic_ttl", Config.anthropic_ttl, choices=("5m", "1h")),
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


class PromptCacheStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.caches: dict[int, PrefixCache] = {}
        req = sim.requests
        self.block_tokens = req.block_tokens or 128
        if config.anthropic_ttl == "1h":
            sim.cache_write_1h = True
        self.blocks_total = self.blocks_hit = 0
        self.explicit_created: set[tuple[int, int]] = set()
        self.storage_usd = 0.0

    def rules_for(self, provider) -> str:
        return PROVIDER_RULES[provider.name] if self.config.rules == "auto" else self.config.rules

    def cache_for(self, provider, rules: str) -> PrefixCache:
        cache = self.caches.get(provider.index)
        if cache is None:
            ttl = self.config.ttl_s
            if ttl is None:
                ttl = 3600.0 if rules == "anthropic" and self.config.anthropic_ttl == "1h" else DEFAULT_TTL_S[rules]
            cache = self.caches[provider.index] = PrefixCache(self.config.capacity_tokens, ttl, self.block_tokens)
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
        cache = self.cache_for(provider, rules)
        now = sim.env.now
        blocks = self.blocks_of(i)
        hit_blocks = cache.leading_hits(blocks, now)
        cache.remember(blocks, now)
        self.blocks_total += len(blocks)
        self.blocks_hit += hit_blocks
        input_tokens = int(run.input_tokens[i])
        matched = min(hit_blocks * self.block_tokens, input_tokens)
        cached, written = self.apply_rules(rules, i, provider, matched, input_tokens)
        if cached or written:
            run.cached_input_tokens[i] = cached
            run.cache_write_tokens[i] = written
            self.touch(i)

    def apply_rules(self, rules: str, i: int, provider, matched: int, input_tokens: int) -> tuple[int, int]:
        """(cached input tokens, cache write tokens) for one request under a provider's rules."""
        info = provider.info
        if rules == "ideal":
            return matched, 0
        if rules == "openai":
            if input_tokens < OPENAI_MIN_TOKENS or matched < OPENAI_MIN_TOKENS:
                return 0, 0
            return OPENAI_MIN_TOKENS + (matched - OPENAI_MIN_TOKENS) // OPENAI_STEP_TOKENS * OPENAI_STEP_TOKENS, 0
        req = self.sim.requests
        prefix_tokens = int(req.prefix_tokens[i])
        if rules == "anthropic":
            upto = prefix_tokens if self.config.breakpoint == "prefix" and prefix_tokens else input_tokens
            if upto < info.min_cacheable_tokens:
                return 0, 0
            cached = min(matched, upto)
            if cached < info.min_cacheable_tokens:
                cached = 0
            return cached, upto - cached
        # gemini
        if self.config.gemini_explicit and prefix_tokens >= info.min_cacheable_tokens:
            self._explicit_cache(i, provider, prefix_tokens)
            return prefix_tokens, 0
        if input_tokens < info.min_cacheable_tokens or matched < info.min_cacheable_tokens:
            return 0, 0
        return matched, 0

    def _explicit_cache(self, i: int, provider, prefix_tokens: int) -> None:
        """First use of a system prompt creates its explicit cache: input price once, then storage."""
        key = (provider.index, int(self.sim.requests.prefix_id[i]))
        if key in self.explicit_created:
            return
        self.explicit_created.add(key)
        prices = self.sim.price_of(provider)
        hours = max(self.sim.requests.horizon_s - self.sim.env.now, 0.0) / 3600.0
        storage = prefix_tokens / 1e6 * provider.info.cache_storage_usd_per_mtok_hour * hours
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
                "explicit_storage_usd": self.storage_usd}


Stage = PromptCacheStage
