"""Ablation: what each stage of a pipeline does alone, and all of them together.

`ablation(scenario)` runs the scenario with no stages, with each stage alone (in its
position, nothing else) and with the whole pipeline, on the same request stream and seed,
and tabulates cost, p95 latency, quality and errors — the table a team needs before
deciding which optimizations earn their complexity.
"""

from __future__ import annotations

import pandas as pd

from lab.result import unique_stage_names
from lab.scenario import Scenario
from lab.sim import simulate


def ablation(scenario: Scenario, seed: int = 0, requests: int | None = None) -> pd.DataFrame:
    """One row per variant: none, each stage alone, all stages."""
    names = unique_stage_names([type("S", (), {"name": c.stage})() for c in scenario.pipeline])
    variants = [("no optimization", ())] + [(f"{name} alone", (cfg,)) for name, cfg in zip(names, scenario.pipeline)]
    variants.append(("all together", scenario.pipeline))
    rows = []
    for label, pipeline in variants:
        s = simulate(scenario.replace(pipeline=tuple(pipeline)), seed=seed, requests=requests, progress=False).summary()
        rows.append({"variant": label, "cost_usd": s["cost_usd"], "reduction_pct": s["reduction_pct"],
                     "p95_latency_ms": s["latency_ms"]["p95"], "quality_mean": s["quality_mean"],
                     "error_rate": s["error_rate"], "sla_violation_rate": s["sla_violation_rate"]})
    return pd.DataFrame(rows).set_index("variant")
