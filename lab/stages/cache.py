"""Response cache: answer a repeated prompt from a store instead of the provider.

The story of a request: look the key up (prompt, plus tenant unless `shared`); a fresh
entry answers at once (`hit_latency_ms`); otherwise the request goes on, and when its
answer returns the entry is stored — unless the data changed while it was in flight
(`versioned`), or the request is non-cacheable (PII, temperature > 0).

Options a mature cache has, each measurable in a scenario:
- eviction `policy` lru | lfu | fifo, `capacity` in entries or `capacity_tokens`;
- `ttl_s` with `ttl_mode` fixed (expiry set at store time) or sliding (a hit restarts it),
  or `dynamic_ttl`: a shorter TTL for prompts whose data changes often;
- invalidation on data updates (`[traffic.updates]`), versioned so a response fetched
  before an update cannot repopulate a stale entry;
- stampede protection: `coalesce` misses on the same key into one fetch, and XFetch
  probabilistic early refresh (`xfetch_beta`; Vattani, Chierichetti & Lowenstein,
  "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.ledger import CACHE_HIT, OK
from lab.stages._eviction import POLICIES, make_store
from lab.stages._singleflight import SingleFlight
from lab.stages.base import Options, Stage

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "cache"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("hit_latency_ms", "stale_quality")


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    policy: str = "lru"
    capacity: int | None = None            # entries; None with no capacity_tokens = unlimited
    capacity_tokens: int | None = None     # or the entries' input + output tokens
    ttl_s: float | None = None
    ttl_mode: str = "fixed"                # "fixed" | "sliding"
    dynamic_ttl: bool = False              # ttl = min(ttl_s, changes_per_ttl / observed change rate)
    changes_per_ttl: float = 0.1
    min_ttl_s: float = 1.0
    shared: bool = False                   # one entry for all tenants
    hit_latency_ms: float = 2.0            # a lookup in a remote store (e.g. Redis GET) on a LAN
    invalidate_on_update: bool = True
    versioned: bool = True
    stale_quality: float = 0.0             # quality of an answer served from changed data
    coalesce: bool = False
    xfetch_beta: float = 0.0               # 0 = off; 1 is the paper's recommended default
    stale_while_revalidate_s: float = 0.0  # serve an entry expired this recently, refreshing it behind


def parse(t: Table) -> Config:
    c = Config(
        policy=t.string("policy", Config.policy, choices=tuple(POLICIES)),
        capacity=t.integer("capacity", Config.capacity, min=1),
        capacity_tokens=t.integer("capacity_tokens", Config.capacity_tokens, min=1),
        ttl_s=t.number("ttl_s", Config.ttl_s, min=0.0, strict_min=True),
        ttl_mode=t.string("ttl_mode", Config.ttl_mode, choices=("fixed", "sliding")),
        dynamic_ttl=t.boolean("dynamic_ttl", Config.dynamic_ttl),
        changes_per_ttl=t.number("changes_per_ttl", Config.changes_per_ttl, min=0.0, strict_min=True),
        min_ttl_s=t.number("min_ttl_s", Config.min_ttl_s, min=0.0),
        shared=t.boolean("shared", Config.shared),
        hit_latency_ms=t.number("hit_latency_ms", Config.hit_latency_ms, min=0.0),
        invalidate_on_update=t.boolean("invalidate_on_update", Config.invalidate_on_update),
        versioned=t.boolean("versioned", Config.versioned),
        stale_quality=t.probability("stale_quality", Config.stale_quality),
        coalesce=t.boolean("coalesce", Config.coalesce),
        xfetch_beta=t.number("xfetch_beta", Config.xfetch_beta, min=0.0),
        stale_while_revalidate_s=t.number("stale_while_revalidate_s", Config.stale_while_revalidate_s, min=0.0),
    )
    if c.capacity is not None and c.capacity_tokens is not None:
        t.fail("capacity_tokens", "give capacity (entries) or capacity_tokens, not both")
    if c.dynamic_ttl and c.ttl_s is None:
        t.fail("dynamic_ttl", "needs ttl_s as the longest TTL")
    if c.xfetch_beta and c.ttl_s is None:
        t.fail("xfetch_beta", "early refresh needs ttl_s (entries that expire)")
    if c.stale_while_revalidate_s and c.ttl_s is None:
        t.fail("stale_while_revalidate_s", "serving stale needs ttl_s (entries that expire)")
    return c


def request_keys(requests, shared: bool) -> memoryview:
    """Each request's cache key: its prompt, plus its tenant unless the cache is shared.

    A memoryview of int64s: indexing it gives a Python int (a fast dict key, as a list's would
    be) at 8 bytes a request instead of a list's 40.
    """
    keys = requests.prompt if shared else (requests.prompt << 16) | requests.tenant.astype(np.int64)
    return memoryview(np.ascontiguousarray(keys, dtype=np.int64))


class Entry:
    """A stored answer: when it expires, which data version it reflects, how long it took to fetch."""

    __slots__ = ("expiry_s", "tag_version", "data_version", "fetch_s", "stored_s", "quality")

    def __init__(self, expiry_s, tag_version, data_version, fetch_s, stored_s, quality):
        self.expiry_s, self.tag_version, self.data_version = expiry_s, tag_version, data_version
        self.fetch_s, self.stored_s, self.quality = fetch_s, stored_s, quality


class CacheStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        req = sim.requests
        capacity = config.capacity if config.capacity is not None else config.capacity_tokens
        self.store = make_store(config.policy, capacity)
        self.size_tokens = config.capacity_tokens is not None
        self.pending: dict[int, tuple[int, int, float]] = {}   # miss i -> (key, data version, t_miss)
        self.flights = SingleFlight()                           # coalesced misses
        self.refreshing: set[int] = set()
        self.version: dict[int, int] = {}                       # intent -> data version
        self.changes: dict[int, int] = {}                       # intent -> updates seen
        self.update_t, self.update_intent, self.next_update = req.update_t_s, req.update_prompt, 0
        self.hit_delay_s = config.hit_latency_ms / 1000.0
        self.hits = self.misses = self.coalesced = self.stale_hits = 0
        self.refreshes = self.blocked_fills = self.expired = self.swr_hits = 0
        self._uniforms = rng.random(1 << 16)
        self._u = 0
        # the options the hot path reads, as plain attributes (a frozen dataclass lookup each is slower)
        self._updates = bool(self.update_t.size)
        self._dynamic_ttl, self._swr_s = config.dynamic_ttl, config.stale_while_revalidate_s
        self._invalidate, self._coalesce = config.invalidate_on_update, config.coalesce
        # per-request keys as Python ints, computed once: dict lookups on them are the hot path
        self.keys = request_keys(req, config.shared)
        self.cacheable = memoryview(np.ascontiguousarray(req.cacheable))   # Python bools, no list
        self.intents = memoryview(np.ascontiguousarray(req.intent, dtype=np.int64))

    # -- keys, versions, TTLs ------------------------------------------------------------

    def key(self, i: int) -> int:
        return self.keys[i]

    def intent_of(self, i: int) -> int:
        return self.intents[i]

    def catch_up(self, now: float) -> None:
        """Apply the data updates that happened up to now (lazily: checked on lookup)."""
        t, k = self.update_t, self.next_update
        while k < len(t) and t[k] <= now:
            intent = int(self.update_intent[k])
            self.version[intent] = self.version.get(intent, 0) + 1
            self.changes[intent] = self.changes.get(intent, 0) + 1
            k += 1
        self.next_update = k

    def ttl_for(self, intent: int, now: float) -> float | None:
        c = self.config
        if not c.dynamic_ttl:
            return c.ttl_s
        seen = self.changes.get(intent, 0)
        if not seen or now <= 0:
            return c.ttl_s
        rate_per_s = seen / now
        return min(c.ttl_s, max(c.min_ttl_s, c.changes_per_ttl / rate_per_s))

    def _uniform(self) -> float:
        if self._u == len(self._uniforms):
            self._uniforms, self._u = self.rng.random(1 << 16), 0
        self._u += 1
        return float(self._uniforms[self._u - 1])

    # -- the story -----------------------------------------------------------------------

    def on_request(self, i: int) -> bool:
        if not self.cacheable[i]:
            return False
        now = self.sim.env._now
        if self._updates:
            self.catch_up(now)
        key = self.keys[i]
        entry = self.store.get(key)
        if entry is not None:
            current = self.version.get(self.intents[i], 0)
            if self._dynamic_ttl:  # the TTL follows the latest estimate of this prompt's volatility
                entry.expiry_s = min(entry.expiry_s, entry.stored_s + self.ttl_for(self.intents[i], now))
            if now >= entry.expiry_s:
                if self._swr_s and now < entry.expiry_s + self._swr_s:
                    return self._serve_stale(i, key, entry, now, current)
                self.store.remove(key)
                self.expired += 1
            elif self._invalidate and entry.tag_version != current:
                self.store.remove(key)
            else:
                return self._hit(i, key, entry, now, current)
        if self._coalesce:
            if self.flights.follow(key, i):
                self.coalesced += 1
                self.touch(i)
                return True
            self.flights.lead(key, i)
        self.misses += 1
        self.pending[i] = (key, self.version.get(self.intents[i], 0), now)
        return False

    def _hit(self, i: int, key: int, entry: Entry, now: float, current_version: int) -> bool:
        c = self.config
        self.hits += 1
        quality = entry.quality          # a hit returns the stored answer, as good as it was
        if entry.data_version != current_version:
            self.stale_hits += 1
            quality = c.stale_quality
        if c.ttl_mode == "sliding" and c.ttl_s is not None:
            entry.expiry_s = now + self.ttl_for(self.intent_of(i), now)
            entry.stored_s = now
        if c.xfetch_beta and key not in self.refreshing:
            # XFetch: refresh early with probability rising as expiry nears: now - delta*beta*ln(u) >= expiry
            u = max(self._uniform(), 1e-300)
            if now - entry.fetch_s * c.xfetch_beta * math.log(u) >= entry.expiry_s:
                self._refresh(i, key)
        self.sim.answer(i, CACHE_HIT, self, self.hit_delay_s, quality)
        return True

    def _serve_stale(self, i: int, key: int, entry: Entry, now: float, current_version: int) -> bool:
        """Stale-while-revalidate (RFC 5861): answer from the expired entry, refresh it in the background."""
        self.swr_hits += 1
        if key not in self.refreshing:
            self._refresh(i, key)
        return self._hit(i, key, entry, now, current_version)

    def _refresh(self, i: int, key: int) -> None:
        """Fetch a fresh answer in the background, paid for by the request that triggered it."""
        sim = self.sim
        provider = sim.providers[0]
        self.refreshing.add(key)
        self.refreshes += 1
        self.pending[-1 - i] = (key, self.version.get(self.intent_of(i), 0), sim.env.now)
        prices = sim.price_of(provider)
        req = sim.requests
        sim.run.extra_cost_usd[i] += float(prices.cost_usd(req.input_tokens[i:i + 1], req.output_tokens[i:i + 1])[0])
        provider.submit_background(i)

    def on_background_done(self, i: int, provider) -> None:
        pending = self.pending.pop(-1 - i, None)
        if pending is not None:
            self.refreshing.discard(pending[0])
            self._store(i, *pending, ok=True)

    def on_response(self, i: int) -> None:
        pending = self.pending.pop(i, None)
        if pending is None:
            return
        key = pending[0]
        ok = self.sim.run.outcome[i] == OK
        self._store(i, *pending, ok=ok)
        if self.config.coalesce:
            for follower in self.flights.release(key, i) or ():
                self.sim.follow(follower, i, self, CACHE_HIT)

    def _store(self, i: int, key: int, fetched_version: int, t_miss: float, ok: bool) -> None:
        now = self.sim.env._now
        if not ok or (self.outages and self.down(now)):   # a store that is down takes no writes
            return
        if self._updates:
            self.catch_up(now)
        intent = self.intents[i]
        current = self.version.get(intent, 0)
        if fetched_version != current and self.config.versioned:
            self.blocked_fills += 1   # the data changed while this answer was in flight
            return
        ttl = self.ttl_for(intent, now) if self._dynamic_ttl else self.config.ttl_s
        expiry = now + ttl if ttl is not None else math.inf
        entry = Entry(expiry, current, fetched_version, now - t_miss, now, float(self.sim.run.quality[i]))
        if self.size_tokens:
            req = self.sim.requests
            self.store.put(key, entry, float(req.input_tokens[i] + req.output_tokens[i]))
        else:
            self.store.put(key, entry, 1.0)

    # -- what warm and prefetch stages use --------------------------------------------

    def key_for(self, prompt: int, tenant: int) -> int:
        return prompt if self.config.shared else (prompt << 16) | tenant

    def holds(self, key: int) -> bool:
        return key in self.store

    def preload(self, key: int, prompt: int) -> None:
        """Store an answer fetched ahead of demand (warming, prefetch), as fresh as a normal fill."""
        now = self.sim.env.now
        if self.outages and self.down(now):
            return
        if self.update_t.size:
            self.catch_up(now)
        intent = prompt // self.sim.scenario.traffic.prompts.paraphrases
        current = self.version.get(intent, 0)
        ttl = self.ttl_for(intent, now)
        req = self.sim.requests
        size = float(req.key_input_tokens[prompt] + req.key_output_tokens[prompt]) if self.size_tokens else 1.0
        self.store.put(key, Entry(now + ttl if ttl is not None else math.inf, current, current, 0.0, now, 1.0), size)

    def stats(self) -> dict:
        lookups = self.hits + self.misses + self.coalesced
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced,
                "hit_ratio": self.hits / lookups if lookups else 0.0, "stale_hits": self.stale_hits,
                "early_refreshes": self.refreshes, "blocked_stale_fills": self.blocked_fills,
                "evictions": self.store.evictions, "expired": self.expired,
                **({"stale_while_revalidate_hits": self.swr_hits} if self.config.stale_while_revalidate_s else {})}


Stage = CacheStage
