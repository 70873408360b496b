"""Semantic cache: answer a paraphrase of a stored prompt, at the risk of a wrong answer.

The story: a request looks for a stored answer to the same intent (its paraphrase group).
The same wording is an exact match. Another wording matches when its similarity to the
stored one reaches `threshold`; such a hit is wrong with a probability given by the
error model, and a wrong hit carries `wrong_quality` into the ledger's `quality`.

The error model is a table of (threshold, share of hits that are wrong), linearly
interpolated. The default comes from GPTCache's own evaluation (its README: about 9 %
of hits wrong at a 0.8 similarity threshold, about 6 % at 0.95, on its test set).
Lower thresholds raise the hit rate (more paraphrases pass) and the wrong share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.ledger import CACHE_HIT, OK
from lab.stages._eviction import POLICIES, make_store
from lab.stages.base import Options, Stage

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "semantic_cache"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("wrong_hit_rate", "wrong_quality", "hit_latency_ms")
GPTCACHE_WRONG_HIT_RATE = ((0.8, 0.09), (0.95, 0.06))


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    threshold: float = 0.8
    wrong_hit_rate: tuple[tuple[float, float], ...] = GPTCACHE_WRONG_HIT_RATE
    wrong_quality: float = 0.0
    policy: str = "lru"
    capacity: int | None = None
    ttl_s: float | None = None
    shared: bool = False
    hit_latency_ms: float = 20.0     # embedding the query plus a vector search


def parse(t: Table) -> Config:
    table = GPTCACHE_WRONG_HIT_RATE
    if t.has("wrong_hit_rate"):
        rows = t.raw("wrong_hit_rate")
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                            and 0 <= x <= 1 for x in r) for r in rows):
            t.fail("wrong_hit_rate", "expected pairs [threshold, wrong share] with both in [0, 1], "
                   "e.g. [[0.8, 0.09], [0.95, 0.06]]")
        table = tuple(sorted((float(a), float(b)) for a, b in rows))
    return Config(threshold=t.probability("threshold", Config.threshold), wrong_hit_rate=table,
                  wrong_quality=t.probability("wrong_quality", Config.wrong_quality),
                  policy=t.string("policy", Config.policy, choices=tuple(POLICIES)),
                  capacity=t.integer("capacity", Config.capacity, min=1),
                  ttl_s=t.number("ttl_s", Config.ttl_s, min=0.0, strict_min=True), shared=t.boolean("shared", Config.shared),
                  hit_latency_ms=t.number("hit_latency_ms", Config.hit_latency_ms, min=0.0))


def wrong_share(config: Config) -> float:
    """Share of non-exact hits that are wrong at the configured threshold."""
    xs, ys = zip(*config.wrong_hit_rate)
    return float(np.interp(config.threshold, xs, ys))


class SemanticCacheStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.store = make_store(config.policy, config.capacity)
        self.p_wrong = wrong_share(config)
        self.pending: dict[int, int] = {}
        self.wrong_draws = rng.random(len(sim.requests))
        self.exact_hits = self.similar_hits = self.wrong_hits = self.misses = 0

    def key(self, i: int) -> int:
        req = self.sim.requests
        intent = int(req.intent[i])
        return intent if self.config.shared else (intent << 16) | int(req.tenant[i])

    def on_request(self, i: int) -> bool:
        sim, req = self.sim, self.sim.requests
        if not req.cacheable[i]:
            return False
        key, now = self.key(i), sim.env.now
        entry = self.store.get(key)
        if entry is not None and now >= entry[1]:
            self.store.remove(key)
            entry = None
        if entry is not None:
            stored_prompt, stored_quality = entry[0], entry[2]
            if stored_prompt == req.prompt[i]:
                self.exact_hits += 1
                sim.answer(i, CACHE_HIT, self, self.config.hit_latency_ms / 1000.0, stored_quality)
                return True
            if req.similarity[i] >= self.config.threshold:
                self.similar_hits += 1
                quality = stored_quality
                if self.wrong_draws[i] < self.p_wrong:
                    self.wrong_hits += 1
                    quality = self.config.wrong_quality
                sim.answer(i, CACHE_HIT, self, self.config.hit_latency_ms / 1000.0, quality)
                return True
        self.misses += 1
        self.pending[i] = key
        return False

    def on_response(self, i: int) -> None:
        key = self.pending.pop(i, None)
        if key is None or self.sim.run.outcome[i] != OK or (self.outages and self.down(self.sim.env.now)):
            return   # a failed call, or a store that is down, stores nothing
        ttl = self.config.ttl_s
        expiry = self.sim.env.now + ttl if ttl is not None else math.inf
        self.store.put(key, (int(self.sim.requests.prompt[i]), expiry, float(self.sim.run.quality[i])))

    def stats(self) -> dict:
        hits = self.exact_hits + self.similar_hits
        return {"exact_hits": self.exact_hits, "similar_hits": self.similar_hits, "wrong_hits": self.wrong_hits,
                "misses": self.misses, "wrong_share_of_hits": self.wrong_hits / hits if hits else 0.0,
                "threshold": self.config.threshold}


Stage = SemanticCacheStage
