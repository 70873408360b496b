"""Optimization stages: one file per strategy, composed in the order the scenario lists them.

A stage is a small class with up to four hooks, called by the simulation in time order:

- `on_request(i) -> bool`: request i reaches the stage. Return True if the stage took it
  (answered it, held it, or merged it into another); False passes it on.
- `on_response(i)`: the provider's answer for request i (which this stage passed on) is back.
- `on_start(i, provider)`: a provider starts serving request i (prompt caching prices here).
- `saved_usd(result)`: what the stage saved, for `by_stage` in the summary.

Nothing here is a SimPy process unless it must wait: a cache hit or a dedup follower costs
no event at all. Stages are registered by name in `STAGES`; each module gives a frozen
`Config` and `parse(table) -> Config`, so composition is data (the scenario), not subclassing.
"""

from __future__ import annotations

import numpy as np

from lab.config import Table, did_you_mean
from lab.ledger import OK


class Stage:
    """Base of every stage: passes everything on and saves nothing."""

    name = "stage"

    def __init__(self, config, sim, index: int, rng: np.random.Generator):
        self.config, self.sim, self.index, self.rng = config, sim, index, rng
        self.bit = np.uint32(1 << index)

    def touch(self, i: int) -> None:
        self.sim.run.stage_flags[i] |= self.bit

    def on_request(self, i: int) -> bool:
        return False

    def on_response(self, i: int) -> None:
        pass

    def served_by(self, result, provider_index: int) -> np.ndarray:
        """Requests this stage touched that provider `provider_index` answered (and billed)."""
        run = result.run
        return (((run.stage_flags & self.bit) != 0) & (run.provider == provider_index)
                & (run.outcome == OK) & (run.answered_by < 0))

    def repriced_saving_usd(self, result, input_tokens, output_tokens) -> float:
        """Price of the touched requests with the given token counts, minus with the ones sent."""
        run, saved = result.run, 0.0
        for k, provider in enumerate(result.providers):
            m = self.served_by(result, k)
            if m.any():
                p = self.sim.price_of(provider)
                saved += float(p.cost_usd(input_tokens[m], output_tokens[m]).sum()
                               - p.cost_usd(run.input_tokens[m], run.output_tokens[m]).sum())
        return saved

    def saved_usd(self, result) -> float:
        """Default: the whole baseline cost of the requests this stage answered."""
        run, base = result.run, result.baseline
        mask = run.answered_by == self.index
        return float(base.cost_usd[mask].sum() - run.cost_usd[mask].sum())

    def stats(self) -> dict:
        """Extra counters shown in the summary under this stage (hits, wrong hits, ...)."""
        return {}


def _registry():
    from lab.stages import (
        batch,
        batch_api,
        budget,
        cache,
        cascade,
        compress,
        dedup,
        prompt_cache,
        rate_limit,
        retry,
        router,
        semantic_cache,
    )

    return {m.NAME: m for m in (cache, semantic_cache, dedup, prompt_cache, batch, batch_api, budget, rate_limit,
                                router, cascade, retry, compress)}


def stage_names() -> list[str]:
    return sorted(_registry())


def parse_stage(t: Table):
    """Read one `[[pipeline]]` table into its stage's Config."""
    registry = _registry()
    name = t.string("stage")
    if name not in registry:
        t.fail("stage", f"unknown stage {name!r}: expected one of {', '.join(sorted(registry))}"
               f"{did_you_mean(name, registry)}")
    config = registry[name].parse(t)
    t.done()
    return config


def validate_pipeline(scenario, table: Table) -> None:
    """Checks that need the whole scenario (a cascade's models exist, batch prices exist)."""
    registry = _registry()
    for k, config in enumerate(scenario.pipeline):
        check = getattr(registry[config.stage], "validate", None)
        problem = check(config, scenario) if check else None
        if problem:
            field, message = problem
            table.fail(f"pipeline[{k}].{field}" if field != "stage" else f"pipeline[{k}]", message)


def build_stage(config, sim, index: int, rng: np.random.Generator) -> Stage:
    return _registry()[config.stage].Stage(config, sim, index, rng)
