"""Experiments a lesson runs: variants on the same request stream, one-knob sweeps, and their tables.

Every run goes through `lab.runs` and every table has its metric names (`lab.runs.LABELS`), so a
lesson's `p95_ms` is the p95 a sweep, a grader or a report means.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from lab.dists import zipf_probabilities
from lab.runs import metrics, run, seed_list


def run_variants(variants: Mapping, seed: int = 0, requests: int | None = None) -> dict:
    """Simulate each variant (label -> Scenario) on the same seed: label -> Result."""
    return {label: run(s, seed, requests) for label, s in variants.items()}


def whole_ms(frame: pd.DataFrame) -> pd.DataFrame:
    """Milliseconds as whole numbers (nullable where no request was served): never "3.450086e+08"."""
    for col in [c for c in frame.columns if str(c).endswith("_ms")]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round(0).astype("Int64")
    return frame


def table(results: Mapping) -> pd.DataFrame:
    """One row of `lab.runs.metrics` per result (label -> Result); milliseconds whole."""
    frame = pd.DataFrame({label: metrics(r) for label, r in results.items()}).T
    frame.index.name = "variant"
    return whole_ms(frame.astype({"requests": int, "provider_calls": int}))


def compare(variants: Mapping, seed: int = 0, requests: int | None = None) -> pd.DataFrame:
    """Run every variant on the same request stream and tabulate them (one row each)."""
    return table(run_variants(variants, seed, requests))


def sweep_values(make: Callable, values, seed: int = 0, requests: int | None = None, *,
                 label: str = "value") -> pd.DataFrame:
    """`lab.runs.metrics` of `make(v)` (a Scenario) for each value v, indexed by the value: a one-knob sweep."""
    frame = pd.DataFrame({v: metrics(run(make(v), seed, requests)) for v in values}).T
    frame.index.name = label
    return whole_ms(frame)


def budget_table(results: Mapping) -> pd.DataFrame:
    """Per run (label -> Result): the largest tenant's spend, rejected and served shares, p95, quality."""
    rows = {}
    for label, r in results.items():
        m = metrics(r)
        by_tenant = r.ledger.groupby("tenant", observed=True)["cost_usd"].sum()
        rows[label] = {"max_tenant_spend_usd": float(by_tenant.max()), "rejected_rate": m["rejected_rate"],
                       "served_share": 1.0 - m["failed_rate"], "p95_ms": m["p95_ms"], "quality_mean": m["quality_mean"]}
    frame = pd.DataFrame(rows).T
    frame.index.name = "action"
    return whole_ms(frame)


def reservation_curve(scenario, reserves=("worst", "p99", "p95", "p90", "p75", "p50"), seeds=5,
                      requests: int | None = None) -> pd.DataFrame:
    """Budget used against overshoot risk, per reservation policy of the scenario's budget stages.

    One row per `reserve` value: the mean utilisation of the cap, the share of seeds whose spend
    passed it, the mean overshoot and the rejected share, over the same seeds for every row.
    """
    rows = {}
    for reserve in reserves:
        variant = scenario.replace(pipeline=tuple(dataclasses.replace(c, reserve=reserve) if c.stage == "budget" else c
                                                  for c in scenario.pipeline))
        stats = []
        for seed in seed_list(seeds):
            r = run(variant, seed, requests)
            b = next(v for k, v in r.summary()["by_stage"].items() if k.startswith("budget"))
            stats.append((b["utilisation"], b["overshoots"] > 0, b["overshoot_usd"], metrics(r)["rejected_rate"]))
        used, over, over_usd, rejected = (np.array(col, dtype=float) for col in zip(*stats))
        rows[reserve] = {"utilisation": used.mean(), "overshoot_share": over.mean(), "overshoot_usd": over_usd.mean(),
                         "rejected_rate": rejected.mean()}
    frame = pd.DataFrame(rows).T
    frame.index.name = "reserve"
    return frame


def with_incident(ledger: pd.DataFrame, start_s: float, end_s: float, factor: float = 3.0) -> pd.DataFrame:
    """A copy of a ledger in which requests arriving in [start_s, end_s) cost `factor` times more.

    A stand-in for an incident (a deploy that tripled prompt sizes for an hour), so an anomaly
    detector has something real to find; the baseline column is left as it was.
    """
    out = ledger.copy()
    mask = (out["t_arrival_s"] >= start_s) & (out["t_arrival_s"] < end_s)
    out.loc[mask, "cost_usd"] = out.loc[mask, "cost_usd"] * factor
    return out


def che_lru_hit_ratio(catalog: int, alpha: float, capacity: int) -> float:
    """Steady-state LRU hit ratio under Zipf(`alpha`) popularity (Che's approximation): lesson 03's theory curve.

    Solve sum_i (1 - exp(-q_i T)) = C for the characteristic time T (bisection on log T),
    then hit = sum_i q_i (1 - exp(-q_i T)). Che, Tung & Wang, IEEE JSAC 20(7), 2002.
    """
    if capacity >= catalog:
        return 1.0
    q = zipf_probabilities(catalog, alpha)
    lo, hi = -30.0, 60.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.sum(1 - np.exp(-q * math.exp(mid))) < capacity:
            lo = mid
        else:
            hi = mid
    t = math.exp((lo + hi) / 2)
    return float(np.sum(q * (1 - np.exp(-q * t))))
