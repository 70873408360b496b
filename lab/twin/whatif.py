"""What-if and recommendation: the twin replayed under several pipelines, ranked under an SLA and a quality floor.

Every policy sees the same request streams (the same seeds), so differences between rows are
the pipeline's; the recommendation says why each policy ranks where it does and when more
seeds would be needed to tell two apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab import fmt
from lab.analysis.stats import mean_ci
from lab.config import Table
from lab.errors import ConfigError
from lab.projections import per_day_usd, requests_per_day
from lab.runs import seed_list, seed_metrics
from lab.scenario import Scenario
from lab.stages import parse_stage
from lab.tables import ResultTable


def policy_pipeline(stages: list[dict], label: str) -> tuple:
    """A policy's stage dicts as pipeline stages, validated exactly as `[[pipeline]]` tables are."""
    if not isinstance(stages, (list, tuple)):
        raise ConfigError(f"policy {label!r}: expected a list of stage tables, got {type(stages).__name__}")
    return tuple(parse_stage(Table(f"<policy {label}>", f"pipeline[{k}]", dict(s))) for k, s in enumerate(stages))


@dataclass
class WhatIf:
    """Runs of one twin under several pipelines: per-seed numbers and the summary table."""

    twin: Scenario
    runs: dict                      # policy name -> one `lab.runs.metrics` dict per seed
    per_day: float                  # requests per day the costs are scaled to
    result: ResultTable

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table

    def __str__(self) -> str:
        return str(self.result)

    def _repr_html_(self) -> str:
        return self.result._repr_html_()


def what_if(twin: Scenario, policies, seeds=5, requests: int | None = None, *,
            progress: bool | None = None) -> WhatIf:
    """Replay `twin` under each policy (name -> list of `[[pipeline]]` stage dicts) on the same seeds.

    A policy named "none" (no stages) is added when missing, so there is always a baseline row.
    Every policy sees the same request streams (same seeds), so differences are the pipeline's.
    A progress bar over the policies is drawn for more than ten runs unless `progress` says otherwise.
    """
    if isinstance(policies, (list, tuple)):
        policies = {f"policy {k + 1}": p for k, p in enumerate(policies)}
    policies = dict(policies)
    if not any(len(p) == 0 for p in policies.values()):
        policies = {"none": [], **policies}
    per_day = requests_per_day(twin)
    runs = {}
    names = list(policies)
    if (len(names) * len(seed_list(seeds)) > 10) if progress is None else progress:
        from tqdm.auto import tqdm  # the progress bar is only drawn when there is a wait to show

        names = tqdm(names, desc=f"{twin.name}: what-if", unit="policy", leave=False)
    for name in names:
        stages = policies[name]
        scenario = twin.replace(pipeline=policy_pipeline(stages, name), name=f"{twin.name} · {name}")
        runs[name] = seed_metrics(scenario, seeds, requests)
    rows = []
    for name, rs in runs.items():
        cost = mean_ci([per_day_usd(r, per_day) for r in rs])
        p95 = mean_ci([r["p95_ms"] for r in rs])
        quality = mean_ci([r["quality_mean"] for r in rs])
        rows.append({"policy": name, "cost_usd_per_day": cost.mean, "cost_ci95": cost.half,
                     "reduction_pct": float(np.mean([r["reduction_pct"] for r in rs])),
                     "p95_ms": p95.mean, "p95_ci95": p95.half, "quality": quality.mean, "quality_ci95": quality.half,
                     "sla_violation_rate": float(np.mean([r["sla_violation_rate"] for r in rs])),
                     "error_rate": float(np.mean([r["error_rate"] for r in rs]))})
    formats = {"policy": str, "cost_usd_per_day": fmt.usd, "cost_ci95": fmt.usd, "reduction_pct": fmt.pct,
               "p95_ci95": lambda x: fmt.number(x, 2), "quality": lambda x: f"{x:.3f}",
               "quality_ci95": lambda x: fmt.number(x, 2), "sla_violation_rate": _share, "error_rate": _share}
    n_seeds = len(next(iter(runs.values())))
    result = ResultTable(f"What if · {twin.name}", pd.DataFrame(rows),
                         [f"{n_seeds} seeds per policy (the same request streams for every policy); "
                          f"± is a 95 % t interval; cost per day at {per_day:,.0f} requests/day"], formats)
    return WhatIf(twin, runs, per_day, result)


def _share(x) -> str:
    return fmt.share(x, 2)


def recommend(whatif: WhatIf, sla_p95_ms: float | None = None, quality_floor: float = 0.0) -> ResultTable:
    """Rank the policies by cost among those meeting the SLA (p95) and the quality floor, and say why.

    `sla_p95_ms` defaults to the twin's `[sla] p95_ms` (0: no SLA). A policy whose interval
    straddles a limit is flagged: more seeds would settle it.
    """
    sla = whatif.twin.sla.p95_ms if sla_p95_ms is None else sla_p95_ms
    t = whatif.table.copy()
    t["meets_sla"] = (t["p95_ms"] <= sla) if sla else True
    t["meets_quality"] = t["quality"] >= quality_floor
    t["feasible"] = t["meets_sla"] & t["meets_quality"]
    t = t.sort_values(["feasible", "cost_usd_per_day"], ascending=[False, True]).reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    none = t[t["policy"] == "none"]
    base = float(none["cost_usd_per_day"].iloc[0]) if len(none) else math.nan
    notes = _explain(t, sla, quality_floor, base, whatif)
    cols = ["rank", "policy", "cost_usd_per_day", "cost_ci95", "reduction_pct", "p95_ms", "quality", "feasible"]
    formats = {**whatif.result.formats, "rank": lambda x: str(int(x)), "feasible": lambda x: "yes" if x else "no"}
    limits = (f"p95 <= {sla:,.0f} ms" if sla else "no SLA") + f", quality >= {quality_floor:g}"
    return ResultTable(f"Recommendation · {whatif.twin.name} ({limits})", t[cols], notes, formats)


def _paired_gap(whatif: WhatIf, a: str, b: str) -> tuple[float, float]:
    """Mean and 95 % half-width of cost(b) - cost(a) per day, paired by seed (same request streams)."""
    diffs = [(rb["cost_usd"] / rb["requests"] - ra["cost_usd"] / ra["requests"]) * whatif.per_day
             for ra, rb in zip(whatif.runs[a], whatif.runs[b])]
    gap = mean_ci(diffs)
    return gap.mean, gap.half


def _explain(t: pd.DataFrame, sla: float, floor: float, base: float, whatif: WhatIf) -> list[str]:
    def money(row):
        ci = "" if math.isnan(row.cost_ci95) else f" (± {fmt.usd(row.cost_ci95)})"
        return f"{fmt.usd(row.cost_usd_per_day)}/day{ci}"

    feasible = t[t["feasible"]]
    notes = []
    if feasible.empty:
        notes.append("No policy meets both the SLA and the quality floor; the cheapest is listed first among "
                     "the infeasible ones. Loosen a limit, add capacity, or try other stages.")
    else:
        best = feasible.iloc[0]
        saving = (f", {100 * (1 - best.cost_usd_per_day / base):.1f} % less than no optimization "
                  f"({fmt.usd(base)}/day)") if base and not math.isnan(base) and best.policy != "none" else ""
        sla_txt = f"its p95 latency {best.p95_ms:,.0f} ms is within the {sla:,.0f} ms SLA" if sla else \
            f"its p95 latency is {best.p95_ms:,.0f} ms (no SLA given)"
        notes.append(f"Recommended: {best.policy!r} at {money(best)}{saving}; {sla_txt} and its mean quality "
                     f"{best.quality:.3f} meets the {floor:g} floor.")
        if len(feasible) > 1:
            second = feasible.iloc[1]
            gap, half = _paired_gap(whatif, best.policy, second.policy)
            if not gap - half > 0:
                notes.append(f"{second.policy!r} costs only {fmt.usd(gap)}/day more (paired by seed, 95 % interval "
                             f"± {fmt.usd(half)}): the two are not separated; run more seeds before choosing on "
                             "cost alone.")
    for row in t.itertuples():
        if row.feasible and not feasible.empty and row.policy == feasible.iloc[0].policy:
            continue
        reasons = []
        if not row.meets_sla:
            reasons.append(f"misses the SLA (p95 {row.p95_ms:,.0f} ms > {sla:,.0f} ms)")
        if not row.meets_quality:
            reasons.append(f"falls below the quality floor (mean quality {row.quality:.3f} < {floor:g})")
        cheaper = not feasible.empty and row.cost_usd_per_day < feasible.iloc[0].cost_usd_per_day
        if reasons:
            lead = "would be cheaper at" if cheaper else "costs"
            notes.append(f"{row.policy!r} {lead} {money(row)} but {' and '.join(reasons)}.")
        elif not feasible.empty:
            extra = row.cost_usd_per_day - feasible.iloc[0].cost_usd_per_day
            notes.append(f"{row.policy!r} meets both limits at {money(row)}, {fmt.usd(extra)}/day more.")
        near = []
        if sla and abs(row.p95_ms - sla) <= np.nan_to_num(row.p95_ci95):
            near.append(f"p95 {row.p95_ms:,.0f} ± {row.p95_ci95:,.0f} ms against the {sla:,.0f} ms SLA")
        if abs(row.quality - floor) <= np.nan_to_num(row.quality_ci95) and row.quality_ci95 > 0:
            near.append(f"quality {row.quality:.3f} ± {row.quality_ci95:.3f} against the {floor:g} floor")
        if near:
            notes.append(f"{row.policy!r} is within the seed noise of a limit ({'; '.join(near)}): "
                         "more seeds would settle which side it falls on.")
    return notes
