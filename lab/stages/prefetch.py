"""Predictive prefetch: after a cache miss, fetch the prompt most likely to be asked next.

The story: the stage counts how often each prompt (per tenant, unless the cache is shared)
is asked. When a request misses the cache and its answer comes back, the stage also asks
the provider the most popular prompt it has seen that the cache does not hold — under
independent requests, the most likely next miss — and stores that answer too. Every
prefetch is billed (to the request that triggered it, as a background refresh is); the
summary's `hit_share` is the share of prefetched entries looked up while still cached,
the number that says whether prefetching pays.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import Table
from lab.ledger import OK
from lab.stages._ahead import AheadStage, check_target
from lab.stages.base import Options

NAME = "prefetch"


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    cache: str = ""                        # the cache (or tiered_cache) to fill; "" = the first one
    per_miss: int = 1                      # prompts fetched after each miss
    candidates: int = 100                  # the most-asked prompts considered
    rerank_every: int = 1000               # lookups between re-rankings of the counts


def parse(t: Table) -> Config:
    return Config(cache=t.string("cache", Config.cache), per_miss=t.integer("per_miss", Config.per_miss, min=1),
                  candidates=t.integer("candidates", Config.candidates, min=1),
                  rerank_every=t.integer("rerank_every", Config.rerank_every, min=1))


def validate(config: Config, scenario):
    return check_target(config, scenario)


class PrefetchStage(AheadStage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.counts: dict[int, int] = {}
        self.who: dict[int, tuple[int, int]] = {}      # key -> (prompt, tenant)
        self.ranked: list[int] = []
        self.seen = 0
        self.missed: set[int] = set()                  # requests whose answer triggers a prefetch

    def on_request(self, i: int) -> bool:
        key = self.count_use(i)
        req = self.sim.requests
        if key < 0 or not req.cacheable[i]:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        if key not in self.who:
            self.who[key] = (int(req.prompt[i]), int(req.tenant[i]))
        self.seen += 1
        if self.seen % self.config.rerank_every == 0:
            self.ranked = sorted(self.counts, key=self.counts.__getitem__, reverse=True)[: self.config.candidates]
        if not self.target.holds(key):
            self.missed.add(i)
        return False

    def on_response(self, i: int) -> None:
        if i not in self.missed:
            return
        self.missed.discard(i)
        if self.sim.run.outcome[i] != OK or (self.target.outages and self.target.down(self.sim.env.now)):
            return
        left = self.config.per_miss
        for key in self.ranked:
            if left == 0:
                break
            left -= self.fetch(*self.who[key], billed_to=i)

    def stats(self) -> dict:
        return self.ahead_stats("prefetched")


Stage = PrefetchStage
