"""What warming and prefetching share: finding their cache, and paying for an answer nobody asked for yet.

A warm or prefetch stage names the cache it fills (`cache = "name"`, else the first cache
or tiered cache of the pipeline) and must come before it, so it sees every lookup and can
count which of its entries were used. What it fetches is billed at the first provider's
list price for that prompt; the charge is carried by a request's ledger row (`extra`, as
a cache's background refresh is), so the ledger still sums to the bill.
"""

from __future__ import annotations

from lab.stages.base import Stage

FILLABLE = ("cache", "tiered_cache")


def target_index(config, pipeline):
    """Index of the cache a warm/prefetch config fills in `pipeline` (configs), or an error message."""
    for k, c in enumerate(pipeline):
        if c.stage in FILLABLE and (not config.cache or config.cache in (c.name, c.stage)):
            return k
    labels = ", ".join(c.name or c.stage for c in pipeline)
    return f"no cache or tiered_cache named {config.cache!r} in the pipeline ({labels})" if config.cache else \
        f"no cache or tiered_cache in the pipeline ({labels})"


def check_target(config, scenario):
    """A warm or prefetch stage needs a catalog of prompts and a cache after it to fill."""
    if scenario.traffic.prompts.catalog <= 0:
        return "stage", "needs a prompt catalog ([traffic] prompts = { catalog = N })"
    own = next(k for k, c in enumerate(scenario.pipeline) if c is config)
    found = target_index(config, scenario.pipeline)
    if isinstance(found, str):
        return "cache", found
    if found < own:
        return "cache", "put this stage before the cache it fills (it counts the lookups of its entries)"
    return None


class AheadStage(Stage):
    """Base of warm and prefetch: the cache it fills, and the bill for fetching a prompt."""

    def __init__(self, config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self._target = None
        self.fetched = self.used = 0
        self.cost_usd = 0.0
        self.waiting: set[int] = set()             # keys fetched ahead and not yet looked up

    @property
    def target(self):
        """The cache it fills; None in a variant without one (an ablation's "warm alone"): then it idles."""
        if self._target is None:   # every stage exists by the first request
            found = target_index(self.config, [s.config for s in self.sim.stages])
            self._target = self.sim.stages[found] if isinstance(found, int) else False
        return self._target or None

    def fetch(self, prompt: int, tenant: int, billed_to: int) -> bool:
        """Fill the target with `prompt`'s answer for `tenant` unless it is there; bill it to a request."""
        target = self.target
        if target is None:
            return False
        key = target.key_for(prompt, tenant)
        if target.holds(key) or key in self.waiting:
            return False
        req = self.sim.requests
        price = self.sim.price_of(self.sim.providers[0])
        cost = float(price.cost_usd(req.key_input_tokens[prompt:prompt + 1], req.key_output_tokens[prompt:prompt + 1])[0])
        self.sim.run.extra_cost_usd[billed_to] += cost
        self.cost_usd += cost
        target.preload(key, prompt)
        self.fetched += 1
        self.waiting.add(key)
        return True

    def count_use(self, i: int) -> int:
        """Count a lookup of an entry fetched ahead (before the cache answers it); returns its key."""
        req = self.sim.requests
        if self.target is None:
            return -1
        key = self.target.key_for(int(req.prompt[i]), int(req.tenant[i]))
        if key in self.waiting:
            self.waiting.discard(key)
            if self.target.holds(key):
                self.used += 1
        return key

    def saved_usd(self, result) -> float:
        return 0.0   # its bill is in the ledger; the hits it buys are the cache's

    def ahead_stats(self, what: str) -> dict:
        return {what: self.fetched, f"{what}_used": self.used,
                "hit_share": self.used / self.fetched if self.fetched else 0.0, f"{what}_cost_usd": self.cost_usd}
