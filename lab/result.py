"""The outcome of `simulate`: the summary (the `costlab run --json` contract) and the ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from lab.errors import CostlabError
from lab.fmt import html_text, usd
from lab.ledger import CACHE_HIT, ERROR, REJECTED, RunArrays, build_ledger
from lab.scenario import Scenario
from lab.traffic import Requests

if TYPE_CHECKING:
    import pandas as pd


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def unique_stage_names(stages) -> list[str]:
    """Stage names for columns and `by_stage`: `cache`, then `cache_2` if it appears twice."""
    seen: dict[str, int] = {}
    names = []
    for s in stages:
        seen[s.name] = seen.get(s.name, 0) + 1
        names.append(s.name if seen[s.name] == 1 else f"{s.name}_{seen[s.name]}")
    return names


@dataclass
class Result:
    """A run and its baseline on the same requests; `summary()` and `ledger` are the contract."""

    scenario: Scenario
    seed: int
    requests: Requests
    run: RunArrays
    baseline: RunArrays
    stages: list
    providers: list
    requested: int | None = None     # the `requests` override it ran with (None: the scenario's own size)
    _ledger: pd.DataFrame | None = field(default=None, repr=False)
    _summary: dict | None = field(default=None, repr=False)

    #: what `save` calls: `lab.store` sets it when imported (the store is a face above the simulation)
    saver: ClassVar[Callable | None] = None

    def save(self, experiment: str, *, tags=(), note: str = "", **options) -> int:
        """Save this run in the experiment store under `experiment`; returns its run id (`import lab.store` first)."""
        if Result.saver is None:
            raise CostlabError("result.save needs the experiment store: run `import lab.store` first")
        return Result.saver(self, experiment, tags=tags, note=note, **options)

    @property
    def stage_names(self) -> list[str]:
        return unique_stage_names(self.stages)

    @property
    def ledger(self) -> pd.DataFrame:
        """One row per request (columnar; built once, on first use)."""
        if self._ledger is None:
            self._ledger = build_ledger(self.requests, self.run, self.baseline,
                                        [p.name for p in self.providers], [p.model for p in self.providers],
                                        self.stage_names)
        return self._ledger

    def latency_ms(self, baseline: bool = False) -> np.ndarray:
        return (self.baseline if baseline else self.run).latency_ms(self.requests.t_arrival_s)

    def peak_cost_per_minute_usd(self, baseline: bool = False) -> float:
        """The dearest minute of the run (cost by arrival minute): what a per-minute guard must allow."""
        run = self.baseline if baseline else self.run
        if not len(run.cost_usd):
            return 0.0
        minute = (self.requests.t_arrival_s // 60.0).astype(np.int64)
        return float(np.bincount(minute, weights=run.cost_usd).max())

    def overhead_block(self) -> dict | None:
        """The stages' own latency (mean, p95, p99) and the alert on its p95; None when no stage adds any."""
        bound = self.scenario.sla.overhead_p95_ms
        overhead = self.run.overhead_ms
        if not bound and not overhead.any():
            return None
        p95 = _pct(overhead, 95)
        return {"mean": float(overhead.mean()), "p95": p95, "p99": _pct(overhead, 99),
                "bound_p95_ms": bound, "alert": bool(bound and p95 > bound)}

    def _block(self, run: RunArrays) -> dict:
        latency = run.latency_ms(self.requests.t_arrival_s)
        n = len(latency)
        served = run.provider >= 0
        sla_ms = self.scenario.sla.limit_ms
        failed = (run.outcome == ERROR) | (run.outcome == REJECTED)
        hits, cacheable = int((run.outcome == CACHE_HIT).sum()), int(self.requests.cacheable.sum())
        violations = failed | (latency > sla_ms) if sla_ms else failed & False
        return {
            "cost_usd": float(run.cost_usd.sum()),
            "cache_hit_rate": float(hits / n),
            "cache_hit_rate_cacheable": float(hits / cacheable) if cacheable else 0.0,
            "sla_violation_rate": float(violations.sum() / n),
            "error_rate": float((run.outcome == ERROR).sum() / n),
            "latency_ms": {"p50": _pct(latency, 50), "p95": _pct(latency, 95), "p99": _pct(latency, 99)},
            "queue_ms": {"mean": float(run.queue_ms[served].mean()) if served.any() else 0.0,
                         "p95": _pct(run.queue_ms[served], 95)},
            "quality_mean": float(run.quality[~failed].mean()) if (~failed).any() else 0.0,
            "provider_calls": int(run.provider_calls),
        }

    def summary(self) -> dict:
        """The `costlab run --json` object: cost, reduction, latency and savings by stage."""
        if self._summary is not None:
            return self._summary
        opt, base = self._block(self.run), self._block(self.baseline)
        base_cost = base["cost_usd"]
        by_stage = {}
        for name, stage in zip(self.stage_names, self.stages):
            touched = int(((self.run.stage_flags & stage.bit) != 0).sum())
            by_stage[name] = {"requests_touched": touched, "cost_saved_usd": stage.saved_usd(self), **stage.stats(),
                              **stage.failure_stats()}
        self._summary = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "requests": int(len(self.requests)),
            "baseline_cost_usd": base_cost,
            "cost_usd": opt["cost_usd"],
            "reduction_pct": 100.0 * (1.0 - opt["cost_usd"] / base_cost) if base_cost > 0 else 0.0,
            "cache_hit_rate": opt["cache_hit_rate"],
            "cache_hit_rate_cacheable": opt["cache_hit_rate_cacheable"],
            "sla_violation_rate": opt["sla_violation_rate"],
            "error_rate": opt["error_rate"],
            "latency_ms": opt["latency_ms"],
            "queue_ms": opt["queue_ms"],
            "by_stage": by_stage,
            "savings_unattributed_usd": (base_cost - opt["cost_usd"])
            - sum(v["cost_saved_usd"] for v in by_stage.values()),   # e.g. failed requests nobody paid for
            "quality_mean": opt["quality_mean"],
            "provider_calls": opt["provider_calls"],
            "peak_cost_per_minute_usd": self.peak_cost_per_minute_usd(),
            "simulated_s": float(self.requests.horizon_s),
            "baseline": {k: base[k] for k in ("latency_ms", "queue_ms", "error_rate", "sla_violation_rate",
                                             "provider_calls")},
        }
        if self.requests.trace_rows_skipped:     # only where a trace had corrupt rows: other summaries unchanged
            self._summary["trace_rows_skipped"] = self.requests.trace_rows_skipped
        overhead = self.overhead_block()
        if overhead is not None:
            self._summary["overhead_ms"] = overhead
        return self._summary

    # -- display ------------------------------------------------------------------

    def table_rows(self) -> list[tuple[str, str, str]]:
        """(metric, baseline, optimized) rows for the CLI and the notebook view."""
        s = self.summary()
        b = s["baseline"]
        return [
            ("requests", f"{s['requests']:,}", f"{s['requests']:,}"),
            ("provider calls", f"{b['provider_calls']:,}", f"{s['provider_calls']:,}"),
            ("cost (USD)", f"{s['baseline_cost_usd']:,.4f}", f"{s['cost_usd']:,.4f}"),
            ("reduction", "", f"{s['reduction_pct']:.1f} %"),
            ("cache hit rate", "0.0 %", f"{100 * s['cache_hit_rate']:.1f} %"),
            ("latency p50 / p95 / p99 (ms)", "{p50:,.0f} / {p95:,.0f} / {p99:,.0f}".format(**b["latency_ms"]),
             "{p50:,.0f} / {p95:,.0f} / {p99:,.0f}".format(**s["latency_ms"])),
            ("queue wait mean / p95 (ms)", "{mean:,.1f} / {p95:,.1f}".format(**b["queue_ms"]),
             "{mean:,.1f} / {p95:,.1f}".format(**s["queue_ms"])),
            ("SLA violations", f"{100 * b['sla_violation_rate']:.2f} %", f"{100 * s['sla_violation_rate']:.2f} %"),
            ("errors", f"{100 * b['error_rate']:.2f} %", f"{100 * s['error_rate']:.2f} %"),
            ("mean quality", "1.000", f"{s['quality_mean']:.3f}"),
        ]

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = "".join(f"<tr><td>{html_text(a)}</td><td>{html_text(b)}</td><td>{html_text(c)}</td></tr>"
                       for a, b, c in self.table_rows())
        stages = "".join(
            f"<tr><td>{html_text(name)}</td><td>{v['requests_touched']:,}</td><td>{html_text(usd(v['cost_saved_usd']))}</td></tr>"
            for name, v in s["by_stage"].items())
        stage_table = (f"<table><tr><th>stage</th><th>requests touched</th><th>saved</th></tr>{stages}</table>"
                       if stages else "<p>No optimization stages (the run is its own baseline).</p>")
        return (f"<div><h4>costlab · {html_text(s['scenario'])} · seed {s['seed']}</h4>"
                f"<table><tr><th></th><th>baseline</th><th>optimized</th></tr>{rows}</table>{stage_table}</div>")

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<Result {s['scenario']!r} seed={s['seed']} requests={s['requests']:,} "
                f"cost=${s['cost_usd']:.4f} baseline=${s['baseline_cost_usd']:.4f} "
                f"reduction={s['reduction_pct']:.1f}%>")
