"""Ablation: what each stage of a pipeline does alone, and all of them together.

`ablation(scenario)` runs the scenario with no stages, with each stage alone (in its
position, nothing else) and with the whole pipeline, on the same request stream and seed,
and tabulates cost, p95 latency, quality and errors — the table a team needs before
deciding which optimizations earn their complexity. Columns are `lab.runs` metric names.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from lab.result import unique_stage_names
from lab.runs import metrics, run
from lab.scenario import Scenario

COLUMNS = ("cost_usd", "reduction_pct", "p95_ms", "quality_mean", "error_rate", "sla_violation_rate")


def ablation(scenario: Scenario, seed: int = 0, requests: int | None = None) -> pd.DataFrame:
    """One row per variant: none, each stage alone, all stages."""
    names = unique_stage_names([SimpleNamespace(name=c.stage) for c in scenario.pipeline])
    variants = [("no optimization", ())] + [(f"{name} alone", (cfg,)) for name, cfg in zip(names, scenario.pipeline)]
    variants.append(("all together", scenario.pipeline))
    rows = []
    for label, pipeline in variants:
        m = metrics(run(scenario.replace(pipeline=tuple(pipeline)), seed, requests))
        rows.append({"variant": label, **{k: m[k] for k in COLUMNS}})
    return pd.DataFrame(rows).set_index("variant")
