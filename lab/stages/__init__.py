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
A module may also give `validate(config, scenario)` (checks that need the whole scenario) and
`WORLD_FIELDS`, the fields that describe the world rather than a choice (graders lock them).
"""

from __future__ import annotations

import numpy as np

from lab.config import Table, did_you_mean
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
from lab.stages.base import Stage

#: every stage module by the name a `[[pipeline]]` table gives in `stage = "..."`
STAGES = {m.NAME: m for m in (cache, semantic_cache, dedup, prompt_cache, batch, batch_api, budget, rate_limit,
                              router, cascade, retry, compress)}


def stage_names() -> list[str]:
    return sorted(STAGES)


def world_fields(name: str) -> tuple[str, ...]:
    """The fields of stage `name` that model the world, not a policy (its module's `WORLD_FIELDS`)."""
    return tuple(getattr(STAGES[name], "WORLD_FIELDS", ()))


def parse_stage(t: Table):
    """Read one `[[pipeline]]` table into its stage's Config."""
    name = t.string("stage")
    if name not in STAGES:
        t.fail("stage", f"unknown stage {name!r}: expected one of {', '.join(sorted(STAGES))}"
               f"{did_you_mean(name, STAGES)}")
    config = STAGES[name].parse(t)
    t.done()
    return config


def validate_pipeline(scenario, table: Table) -> None:
    """Checks that need the whole scenario (a cascade's models exist, batch prices exist)."""
    for k, config in enumerate(scenario.pipeline):
        check = getattr(STAGES[config.stage], "validate", None)
        problem = check(config, scenario) if check else None
        if problem:
            field, message = problem
            table.fail(f"pipeline[{k}].{field}" if field != "stage" else f"pipeline[{k}]", message)


def build_stage(config, sim, index: int, rng: np.random.Generator) -> Stage:
    return STAGES[config.stage].Stage(config, sim, index, rng)
