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

import dataclasses

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
    prefetch,
    prompt_cache,
    rate_limit,
    retry,
    router,
    semantic_cache,
    tiered_cache,
    warm,
)
from lab.stages.base import ON_FAILURE, Stage

#: every stage module by the name a `[[pipeline]]` table gives in `stage = "..."`
STAGES = {m.NAME: m for m in (cache, semantic_cache, dedup, prompt_cache, batch, batch_api, budget, rate_limit,
                              router, cascade, retry, compress, tiered_cache, warm, prefetch)}


def stage_names() -> list[str]:
    return sorted(STAGES)


#: fields every stage takes that model the world (a store's outages, its own latency), not a policy
WORLD_OPTIONS = ("outages", "overhead_ms")


def world_fields(name: str) -> tuple[str, ...]:
    """The fields of stage `name` that model the world, not a policy (its module's `WORLD_FIELDS`)."""
    return tuple(getattr(STAGES[name], "WORLD_FIELDS", ())) + WORLD_OPTIONS


def parse_stage(t: Table):
    """Read one `[[pipeline]]` table into its stage's Config."""
    name = t.string("stage")
    if name not in STAGES:
        t.fail("stage", f"unknown stage {name!r}: expected one of {', '.join(sorted(STAGES))}"
               f"{did_you_mean(name, STAGES)}")
    options = _options(t, STAGES[name])
    config = STAGES[name].parse(t)
    t.done()
    return dataclasses.replace(config, **options)


def _options(t: Table, module) -> dict:
    """The fields every stage takes (`lab.stages.base.Options`); outages only where something can fail."""
    out = {"name": t.string("name", "")}
    if t.has("overhead_ms"):
        out["overhead_ms"] = t.dist("overhead_ms", kinds=("constant", "exponential", "lognormal", "uniform",
                                                          "empirical"))
    if t.has("outages") or t.has("on_failure"):
        if not getattr(module, "CAN_FAIL", False):
            failable = sorted(n for n, m in STAGES.items() if getattr(m, "CAN_FAIL", False))
            t.fail("outages", f"only a stage with a store or a worker can fail: {', '.join(failable)}")
        out["outages"] = _windows(t)
        out["on_failure"] = t.string("on_failure", "bypass", choices=ON_FAILURE)
    return out


def _windows(t: Table) -> tuple[tuple[float, float], ...]:
    """`outages = [[start_s, end_s], ...]`, each window non-empty, sorted."""
    raw = t.raw("outages", [])
    if not isinstance(raw, list):
        t.fail("outages", f"expected a list of [start_s, end_s] pairs, got {raw!r:.60}")
    out = []
    for k, w in enumerate(raw):
        if (not isinstance(w, list) or len(w) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < float("inf")
                           for x in w)):
            t.fail(f"outages[{k}]", f"expected [start_s, end_s] with 0 <= start_s < end_s, got {w!r:.60}")
        if w[1] <= w[0]:
            t.fail(f"outages[{k}]", f"expected end_s > start_s, got {w!r}")
        out.append((float(w[0]), float(w[1])))
    return tuple(sorted(out))


def validate_pipeline(scenario, table: Table) -> None:
    """Checks that need the whole scenario (a cascade's models exist, batch prices exist)."""
    for k, config in enumerate(scenario.pipeline):
        check = getattr(STAGES[config.stage], "validate", None)
        problem = check(config, scenario) if check else None
        if problem:
            field, message = problem
            table.fail(f"pipeline[{k}].{field}" if field != "stage" else f"pipeline[{k}]", message)


def stage_labels(configs) -> list[str]:
    """What routes call each stage: its `name`, else its kind (`cache`, then `cache_2` if repeated)."""
    seen: dict[str, int] = {}
    out = []
    for c in configs:
        seen[c.stage] = seen.get(c.stage, 0) + 1
        out.append(c.name or (c.stage if seen[c.stage] == 1 else f"{c.stage}_{seen[c.stage]}"))
    return out


def build_stage(config, sim, index: int, rng: np.random.Generator) -> Stage:
    return STAGES[config.stage].Stage(config, sim, index, rng)
