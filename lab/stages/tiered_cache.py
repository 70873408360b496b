"""Tiered response cache: an in-process L1 on each gateway replica in front of one shared L2.

The story of a request: its replica's L1 is looked up first (`l1_lookup_ms`, microseconds in
process memory); a fresh entry answers at once. On an L1 miss the shared L2 is asked
(`l2_lookup_ms`, a network hop to e.g. Redis); an L2 hit answers and is copied into that L1.
A miss in both goes to the provider, and its answer is stored in L2 and in the L1 of the
replica that asked. A miss pays both lookups before the provider call: that is this stage's
own overhead, added to the request's `overhead_ms`.

Requests reach replicas uniformly at random (a load balancer's round robin over independent
arrivals), so each L1 sees the independent reference stream thinned, and L2 sees what the
L1s miss — the construction behind the per-tier check against Che's approximation
(tests/stages/test_tiered_cache.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.ledger import CACHE_HIT, OK
from lab.stages._eviction import POLICIES, make_store
from lab.stages.base import Options, Stage
from lab.stages.cache import request_keys

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "tiered_cache"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("l1_lookup_ms", "l2_lookup_ms", "replicas")


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    replicas: int = 4                      # gateway replicas, each with its own L1
    l1_policy: str = "lru"
    l1_capacity: int | None = 100          # entries per replica; None = unlimited
    l1_ttl_s: float | None = None
    l1_lookup_ms: float = 0.05             # an in-process dict lookup and copy
    l2_policy: str = "lru"
    l2_capacity: int | None = 10_000       # entries, shared by all replicas
    l2_ttl_s: float | None = None
    l2_lookup_ms: float = 2.0              # a round trip to a remote store on a LAN (as cache.hit_latency_ms)
    shared: bool = False                   # one entry for all tenants


def parse(t: Table) -> Config:
    return Config(
        replicas=t.integer("replicas", Config.replicas, min=1),
        l1_policy=t.string("l1_policy", Config.l1_policy, choices=tuple(POLICIES)),
        l1_capacity=t.integer("l1_capacity", Config.l1_capacity, min=1),
        l1_ttl_s=t.number("l1_ttl_s", Config.l1_ttl_s, min=0.0, strict_min=True),
        l1_lookup_ms=t.number("l1_lookup_ms", Config.l1_lookup_ms, min=0.0),
        l2_policy=t.string("l2_policy", Config.l2_policy, choices=tuple(POLICIES)),
        l2_capacity=t.integer("l2_capacity", Config.l2_capacity, min=1),
        l2_ttl_s=t.number("l2_ttl_s", Config.l2_ttl_s, min=0.0, strict_min=True),
        l2_lookup_ms=t.number("l2_lookup_ms", Config.l2_lookup_ms, min=0.0),
        shared=t.boolean("shared", Config.shared),
    )


class TieredCacheStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        c = config
        self.l1 = [make_store(c.l1_policy, c.l1_capacity) for _ in range(c.replicas)]
        self.l2 = make_store(c.l2_policy, c.l2_capacity)
        self.keys = request_keys(sim.requests, c.shared)
        self.cacheable = sim.requests.cacheable.tolist()
        self.replica = rng.integers(0, c.replicas, len(sim.requests)).tolist()
        self.pending: dict[int, int] = {}             # miss i -> key
        self.l1_s, self.both_s = c.l1_lookup_ms / 1000.0, (c.l1_lookup_ms + c.l2_lookup_ms) / 1000.0
        self.l1_hits = self.l2_hits = self.misses = 0

    def _fresh(self, store, key: int, now: float) -> bool:
        expiry = store.get(key)
        if expiry is None:
            return False
        if now >= expiry:
            store.remove(key)
            return False
        return True

    def on_request(self, i: int) -> bool:
        if not self.cacheable[i]:
            return False
        now, key, l1 = self.sim.env.now, self.keys[i], self.l1[self.replica[i]]
        if self._fresh(l1, key, now):
            self.l1_hits += 1
            self.sim.answer(i, CACHE_HIT, self, self.l1_s)
            return True
        if self._fresh(self.l2, key, now):
            self.l2_hits += 1
            l1.put(key, min(self.l2.get(key), self._expiry(self.config.l1_ttl_s, now)))
            self.sim.answer(i, CACHE_HIT, self, self.both_s)
            return True
        self.misses += 1
        self.sim.run.overhead_ms[i] += self.config.l1_lookup_ms + self.config.l2_lookup_ms
        self.pending[i] = key
        return False

    @staticmethod
    def _expiry(ttl_s: float | None, now: float) -> float:
        return now + ttl_s if ttl_s is not None else math.inf

    def on_response(self, i: int) -> None:
        key = self.pending.pop(i, None)
        if key is None or self.sim.run.outcome[i] != OK:
            return
        self.put(key, self.replica[i])

    def put(self, key: int, replica: int | None = None) -> None:
        """Store an answer in L2 (and in `replica`'s L1), unless the store is down."""
        now = self.sim.env.now
        if self.outages and self.down(now):
            return
        self.l2.put(key, self._expiry(self.config.l2_ttl_s, now))
        if replica is not None:
            self.l1[replica].put(key, self._expiry(self.config.l1_ttl_s, now))

    # -- what warm and prefetch stages use --------------------------------------------

    def key_for(self, prompt: int, tenant: int) -> int:
        return prompt if self.config.shared else (prompt << 16) | tenant

    def holds(self, key: int) -> bool:
        return key in self.l2

    def preload(self, key: int, prompt: int) -> None:
        """An answer fetched ahead of demand goes to the shared L2 (every replica can reach it)."""
        self.put(key)

    def stats(self) -> dict:
        lookups = self.l1_hits + self.l2_hits + self.misses
        l1_misses = self.l2_hits + self.misses
        return {"l1_hits": self.l1_hits, "l2_hits": self.l2_hits, "misses": self.misses,
                "l1_hit_ratio": self.l1_hits / lookups if lookups else 0.0,
                "l2_hit_ratio": self.l2_hits / l1_misses if l1_misses else 0.0,
                "hit_ratio": (self.l1_hits + self.l2_hits) / lookups if lookups else 0.0,
                "l1_evictions": int(np.sum([s.evictions for s in self.l1])), "l2_evictions": self.l2.evictions}


Stage = TieredCacheStage
