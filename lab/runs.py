"""Running a scenario on several seeds, and the one set of metric names every face compares.

Lessons, grading, projections, baselines, sweeps and the ablation all ask the same two things:
"run this on these seeds" and "what are this run's key numbers?". They ask here, so a p95 is
called `p95_ms` everywhere and a run on seed 3 is the same run whichever face asked for it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lab.errors import ConfigError
from lab.ledger import ERROR, REJECTED
from lab.result import Result
from lab.scenario import Scenario
from lab.sim import simulate

# name -> what a person reads on an axis or in a table header
LABELS = {
    "requests": "requests",
    "cost_usd": "cost (USD)",
    "baseline_cost_usd": "cost without optimization (USD)",
    "reduction_pct": "cost reduction (%)",
    "cache_hit_rate": "cache hit rate",
    "p50_ms": "p50 latency (ms)",
    "p95_ms": "p95 latency (ms)",
    "p99_ms": "p99 latency (ms)",
    "queue_mean_ms": "mean queue wait (ms)",
    "queue_p95_ms": "p95 queue wait (ms)",
    "error_rate": "share of requests failed",
    "rejected_rate": "share of requests rejected",
    "failed_rate": "share of requests failed or rejected",
    "sla_violation_rate": "share of requests over the SLA or failed",
    "quality_mean": "mean quality",
    "provider_calls": "provider calls",
    "mean_service_ms": "mean service time per call (ms)",
    "peak_cost_per_minute_usd": "cost of the dearest minute (USD)",
    "baseline_peak_cost_per_minute_usd": "dearest minute without optimization (USD)",
}
METRICS = tuple(LABELS)


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    """`5` -> [0, 1, 2, 3, 4]; a list of seeds stays as it is (each a whole number >= 0)."""
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds: expected a count or a list of whole numbers, got {seeds!r}")
    if isinstance(seeds, int | np.integer):
        if seeds < 1:
            raise ConfigError(f"seeds: expected at least 1, got {seeds}")
        return list(range(int(seeds)))
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ConfigError(f"seeds: expected whole numbers >= 0, got {s!r}")
        out.append(int(s))
    if not out:
        raise ConfigError("seeds: expected at least one seed, got an empty list")
    return out


def metrics(result: Result) -> dict:
    """The numbers a face compares, flat and with units in their names (see `LABELS`)."""
    s = result.summary()
    outcome = result.run.outcome
    n = max(len(outcome), 1)
    rejected = float((outcome == REJECTED).sum() / n)
    served = result.run.provider >= 0
    return {
        "requests": s["requests"], "cost_usd": s["cost_usd"], "baseline_cost_usd": s["baseline_cost_usd"],
        "reduction_pct": s["reduction_pct"], "cache_hit_rate": s["cache_hit_rate"],
        "p50_ms": s["latency_ms"]["p50"], "p95_ms": s["latency_ms"]["p95"], "p99_ms": s["latency_ms"]["p99"],
        "queue_mean_ms": s["queue_ms"]["mean"], "queue_p95_ms": s["queue_ms"]["p95"],
        "error_rate": s["error_rate"], "rejected_rate": rejected,
        "failed_rate": float(np.isin(outcome, (ERROR, REJECTED)).sum() / n),
        "sla_violation_rate": s["sla_violation_rate"],
        "quality_mean": s["quality_mean"], "provider_calls": s["provider_calls"],
        "mean_service_ms": float(result.run.service_ms[served].mean()) if served.any() else 0.0,
        "peak_cost_per_minute_usd": s["peak_cost_per_minute_usd"],
        "baseline_peak_cost_per_minute_usd": result.peak_cost_per_minute_usd(baseline=True),
    }


def run(scenario: Scenario, seed: int = 0, requests: int | None = None, *, progress: bool = False) -> Result:
    """`lab.simulate`, with the progress bar off unless asked for."""
    return simulate(scenario, seed=seed, requests=requests, progress=progress)


def iter_runs(scenario: Scenario, seeds, requests: int | None = None, *, progress: bool = False):
    """Simulate `scenario` once per seed (a count or a list), yielding (seed, Result) one at a time.

    A face that keeps only a few numbers per seed iterates here, so no more than one run's
    arrays are held at once.
    """
    seeds = seed_list(seeds)
    if progress:
        from tqdm.auto import tqdm  # the progress bar is only drawn when asked for

        seeds = tqdm(seeds, desc=f"{scenario.name}: seeds", unit="seed", leave=False)
    for s in seeds:
        yield s, run(scenario, s, requests)


def run_seeds(scenario: Scenario, seeds, requests: int | None = None, *, progress: bool = False) -> list[Result]:
    """Simulate `scenario` once per seed (a count or a list); one Result each, in seed order."""
    return [result for _, result in iter_runs(scenario, seeds, requests, progress=progress)]


def seed_metrics(scenario: Scenario, seeds, requests: int | None = None, *, progress: bool = False) -> list[dict]:
    """`metrics` of one run per seed, in seed order (the runs themselves are not kept)."""
    return [metrics(result) for _, result in iter_runs(scenario, seeds, requests, progress=progress)]
