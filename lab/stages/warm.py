"""Cache warming: fill a cache with the most popular prompts (or a given list) before a known peak.

The story: at `at_s` (say, before the morning rush) the gateway asks the provider the
`top_n` most popular prompts of the catalog, or the listed catalog ranks, and stores the
answers in its cache (for every tenant, unless the cache is shared). The bill is paid at
once, carried by the first request at or after `at_s`; the summary says how many of the
warmed entries were looked up while still cached (`hit_share`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.stages._ahead import AheadStage, check_target
from lab.stages.base import Options

NAME = "warm"


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    cache: str = ""                        # the cache (or tiered_cache) to fill; "" = the first one
    top_n: int = 0                         # the N most popular catalog prompts
    ranks: tuple[int, ...] = ()            # or these catalog ranks (0 = the most popular)
    at_s: float = 0.0                      # when the warm-up runs


def parse(t: Table) -> Config:
    ranks = t.numbers("ranks", (), min=0.0)
    if any(r != int(r) for r in ranks):
        t.fail("ranks", "expected whole catalog ranks (0 = the most popular)")
    c = Config(cache=t.string("cache", Config.cache), top_n=t.integer("top_n", Config.top_n, min=0),
               ranks=tuple(int(r) for r in ranks), at_s=t.number("at_s", Config.at_s, min=0.0))
    if not c.top_n and not c.ranks:
        t.fail("top_n", "give top_n (the most popular prompts) or ranks (a list of catalog ranks)")
    return c


def validate(config: Config, scenario):
    return check_target(config, scenario)


class WarmStage(AheadStage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        sim.env.timeout(config.at_s).callbacks.append(self._warm)

    def _warm(self, event) -> None:
        sim, c = self.sim, self.config
        if self.target is None:
            return
        req, prompts = sim.requests, sim.scenario.traffic.prompts
        catalog = prompts.catalog
        ranks = [r for r in (c.ranks or range(c.top_n)) if r < catalog]
        tenants = [0] if getattr(self.target.config, "shared", False) else range(len(req.tenant_names))
        billed_to = min(int(np.searchsorted(req.t_arrival_s, c.at_s)), len(req) - 1)
        for rank in ranks:
            for tenant in tenants:
                self.fetch(rank * prompts.paraphrases, tenant, billed_to)

    def on_request(self, i: int) -> bool:
        self.count_use(i)
        return False

    def stats(self) -> dict:
        return self.ahead_stats("warmed")


Stage = WarmStage
