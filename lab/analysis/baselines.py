"""Baselines and comparisons: how much cheaper, how much faster, and is it more than noise?

A run is summarised by `run_metrics` (cost, cost per 1k requests, tokens sent, latency
percentiles, SLA violations, quality) computed from its ledger. A `Comparison` sets a
candidate's metrics against a baseline's: absolute and percentage change, and — when both
sides have several seeds — a 95 % confidence interval and a t-test. Runs on the same seeds
are paired (each seed gives both sides the very same traffic, so the noise cancels);
otherwise Welch's test is used. `BaselineStore` keeps named baselines as JSON files so
later runs can be compared with them.

    runs = run_seeds("scenarios/support-chatbot.toml", seeds=range(5))
    runs.comparison()              # optimized vs no optimization, 95 % CIs, paired t
    store = BaselineStore("baselines"); store.save("before-cache", runs.baseline_samples)
    store.compare("before-cache", runs)
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lab import fmt
from lab.analysis.attribution import savings_by_strategy
from lab.analysis.frame import as_ledger, served_mask
from lab.analysis.stats import Difference, mean_ci, paired_difference, welch_difference
from lab.errors import ConfigError
from lab.files import write_json_atomic
from lab.ledger import build_ledger
from lab.loader import load_scenario
from lab.runs import iter_runs, seed_list

#: metric -> (label, unit, higher_is_better)
METRICS = {
    "cost_usd": ("cost", "USD", False),
    "cost_per_1k_requests_usd": ("cost per 1k requests", "USD", False),
    "provider_calls": ("provider calls", "calls", False),
    "input_tokens_sent": ("input tokens sent", "tokens", False),
    "uncached_input_tokens": ("uncached input tokens", "tokens", False),
    "output_tokens_generated": ("output tokens generated", "tokens", False),
    "latency_p50_ms": ("latency p50", "ms", False),
    "latency_p95_ms": ("latency p95", "ms", False),
    "latency_p99_ms": ("latency p99", "ms", False),
    "sla_violation_rate": ("SLA violation rate", "share", False),
    "error_rate": ("error rate", "share", False),
    "cache_hit_rate": ("cache hit rate", "share", True),
    "quality_mean": ("mean quality", "0..1", True),
}


def run_metrics(ledger, sla_ms: float | None = None) -> dict:
    """The numbers a comparison uses, from one ledger (a Result works too).

    Tokens count only requests a provider served (what was sent and billed); latency
    percentiles are over all requests; the SLA violation rate counts requests slower than
    `sla_ms` or failed, as the run summary does (None when no SLA is given).
    """
    if sla_ms is None and hasattr(ledger, "scenario"):
        sla_ms = ledger.scenario.sla.p95_ms
    led = as_ledger(ledger)
    n = len(led)
    served = served_mask(led)
    outcome = led["outcome"].astype(str).to_numpy()
    latency = led["latency_ms"].to_numpy(np.float64) if "latency_ms" in led else np.zeros(n)
    failed = np.isin(outcome, ["error", "rejected"])
    cost = float(led["cost_usd"].sum())

    def tokens(col):
        return int(led[col].to_numpy(np.int64)[served].sum()) if col in led else 0

    def pct(q):
        return float(np.percentile(latency, q)) if n else math.nan

    return {
        "requests": n,
        "cost_usd": cost,
        "cost_per_1k_requests_usd": 1000.0 * cost / n if n else math.nan,
        "provider_calls": int(served.sum()),
        "input_tokens_sent": tokens("input_tokens"),
        "uncached_input_tokens": tokens("input_tokens") - tokens("cached_input_tokens"),
        "output_tokens_generated": tokens("output_tokens"),
        "latency_p50_ms": pct(50), "latency_p95_ms": pct(95), "latency_p99_ms": pct(99),
        "sla_violation_rate": float((failed | (latency > sla_ms)).mean()) if sla_ms and n else None,
        "error_rate": float((outcome == "error").mean()) if n else math.nan,
        "cache_hit_rate": float((outcome == "cache_hit").mean()) if n else math.nan,
        "quality_mean": float(led["quality"].mean()) if "quality" in led and n else math.nan,
    }


def baseline_ledger(result) -> pd.DataFrame:
    """The ledger of a Result's no-optimization baseline run (same requests, no stages)."""
    return build_ledger(result.requests, result.baseline, result.baseline,
                        [p.name for p in result.providers], [p.model for p in result.providers], [])


def _samples(data, sla_ms: float | None) -> list[dict]:
    """Per-seed metric dicts from a Result, a ledger, a SeedRuns, a list of metric dicts or of those."""
    if isinstance(data, SeedRuns):
        return list(data.run_samples)
    if isinstance(data, dict):
        return [data]
    if isinstance(data, (list, tuple)):
        out = []
        for item in data:
            out.extend(_samples(item, sla_ms))
        return out
    m = run_metrics(data, sla_ms)
    seed = getattr(data, "seed", None)
    if seed is not None:
        m["seed"] = int(seed)
    return [m]


# --------------------------------------------------------------------------- comparison


@dataclass
class Comparison:
    """A candidate's metrics against a baseline's, with CIs and tests when there are seeds."""

    baseline: list[dict]
    candidate: list[dict]
    baseline_name: str = "baseline"
    candidate_name: str = "candidate"
    level: float = 0.95

    @property
    def paired(self) -> bool:
        """True when both sides ran the same seeds (so differences are taken seed by seed)."""
        sb = [s.get("seed") for s in self.baseline]
        sc = [s.get("seed") for s in self.candidate]
        return len(sb) > 1 and None not in sb and sorted(sb) == sorted(sc) and len(set(sb)) == len(sb)

    def difference(self, metric: str) -> Difference:
        """Candidate minus baseline for one metric, paired by seed when possible."""
        if self.paired:
            by_seed = {s["seed"]: s[metric] for s in self.candidate}
            base = [s[metric] for s in self.baseline]
            cand = [by_seed[s["seed"]] for s in self.baseline]
            return paired_difference(base, cand, self.level)
        return welch_difference([s[metric] for s in self.baseline], [s[metric] for s in self.candidate],
                                self.level)

    def _relative(self, metric: str, d: Difference, base_mean: float) -> tuple[float, float, float]:
        """Change in % of the baseline: per seed when paired (its own t interval), else of the means."""
        if self.paired and all(s[metric] for s in self.baseline):
            by_seed = {s["seed"]: s[metric] for s in self.candidate}
            pct = [100.0 * (by_seed[s["seed"]] - s[metric]) / abs(s[metric]) for s in self.baseline]
            return mean_ci(pct, self.level)
        scale = 100.0 / abs(base_mean) if base_mean else math.nan
        return d.mean * scale, d.ci_low * scale, d.ci_high * scale

    def table(self) -> pd.DataFrame:
        """One row per metric: means, change, change %, the CI of the change, p-value, verdict."""
        rows = []
        for metric, (label, unit, higher_better) in METRICS.items():
            vb = [s.get(metric) for s in self.baseline]
            vc = [s.get(metric) for s in self.candidate]
            if any(v is None or not np.isfinite(v) for v in vb + vc) or not vb or not vc:
                continue
            d = self.difference(metric)
            base_mean = float(np.mean(vb))
            pct, pct_lo, pct_hi = self._relative(metric, d, base_mean)
            better = None
            if d.mean != 0:
                better = (d.mean > 0) == higher_better
            rows.append({
                "metric": metric, "label": label, "unit": unit,
                "baseline": base_mean, "candidate": float(np.mean(vc)),
                "change": d.mean, "change_pct": pct,
                "ci_low": d.ci_low, "ci_high": d.ci_high,
                "change_pct_ci_low": pct_lo, "change_pct_ci_high": pct_hi,
                "p_value": d.p_value, "significant": d.significant, "better": better,
                "test": d.test, "n": d.n,
            })
        return pd.DataFrame(rows).set_index("metric")

    def headline(self) -> dict:
        """The cost reduction in one dict: saving (USD, %), its CI, and whether it is significant."""
        t = self.table()
        row = t.loc["cost_usd"]
        sig = row["significant"]
        return {
            "baseline_cost_usd": float(row["baseline"]), "candidate_cost_usd": float(row["candidate"]),
            "saved_usd": -float(row["change"]), "reduction_pct": -float(row["change_pct"]),
            "reduction_pct_ci": [-float(row["change_pct_ci_high"]), -float(row["change_pct_ci_low"])],
            "saved_usd_ci": [-float(row["ci_high"]), -float(row["ci_low"])],
            "significant": None if sig is None else bool(sig), "p_value": float(row["p_value"]),
            "test": row["test"], "n": int(row["n"]),
            "latency_p95_change_ms": float(t.loc["latency_p95_ms", "change"]) if "latency_p95_ms" in t.index else None,
        }

    def _repr_html_(self) -> str:
        t = self.table()
        text, num = fmt.html_text, fmt.number
        head = (f"<p><b>{text(self.candidate_name)}</b> vs <b>{text(self.baseline_name)}</b> · "
                f"{len(self.baseline)} vs {len(self.candidate)} sample(s)"
                f"{' · paired by seed' if self.paired else ''} · {int(self.level * 100)} % CI</p>")
        rows = []
        for _, r in t.iterrows():
            ci = "" if not np.isfinite(r["ci_low"]) else f"[{num(r['ci_low'])}, {num(r['ci_high'])}]"
            sig = {True: "yes", False: "no", None: "n/a"}[r["significant"]]
            rows.append(f"<tr><td>{text(r['label'])} ({text(r['unit'])})</td><td>{num(r['baseline'])}</td>"
                        f"<td>{num(r['candidate'])}</td><td>{num(r['change'])}</td>"
                        f"<td>{r['change_pct']:+.1f} %</td><td>{ci}</td><td>{sig}</td></tr>")
        return (f"<div>{head}<table><tr><th>metric</th><th>baseline</th><th>candidate</th><th>change</th>"
                f"<th>change %</th><th>CI of change</th><th>significant</th></tr>{''.join(rows)}</table></div>")


def compare(baseline, candidate, sla_ms: float | None = None, *, baseline_name: str = "baseline",
            candidate_name: str = "candidate", level: float = 0.95) -> Comparison:
    """Compare any two runs (Results, ledgers, SeedRuns or lists of them)."""
    return Comparison(_samples(baseline, sla_ms), _samples(candidate, sla_ms), baseline_name, candidate_name, level)


# --------------------------------------------------------------------------- seeds


@dataclass
class SeedRuns:
    """One scenario run on several seeds: per-seed metrics of the optimized run and its baseline."""

    scenario: str
    seeds: list[int]
    run_samples: list[dict]
    baseline_samples: list[dict]
    savings_by_strategy: list[dict] = field(default_factory=list)   # per seed: strategy -> USD
    simulated_s: list[float] = field(default_factory=list)

    def comparison(self, level: float = 0.95) -> Comparison:
        """Optimized vs no optimization, paired by seed."""
        return Comparison(self.baseline_samples, self.run_samples, "no optimization", self.scenario, level)

    def strategy_table(self, level: float = 0.95) -> pd.DataFrame:
        """Mean saving per strategy across seeds with its t interval."""
        frame = pd.DataFrame(self.savings_by_strategy).fillna(0.0)
        frame = frame.loc[:, (frame != 0).any(axis=0)]
        rows = {}
        for col in frame.columns:
            m, lo, hi = mean_ci(frame[col].to_numpy(), level)
            rows[col] = {"saved_usd": m, "ci_low": lo, "ci_high": hi}
        return pd.DataFrame(rows).T.rename_axis("strategy")

    def monthly_cost_usd(self, level: float = 0.95, baseline: bool = False) -> tuple[float, float, float]:
        """Run-rate cost per 30 days (mean, CI low, CI high) across seeds."""
        samples = self.baseline_samples if baseline else self.run_samples
        per_month = [s["cost_usd"] / max(t, 1e-9) * 30 * 86400 for s, t in zip(samples, self.simulated_s)]
        return mean_ci(per_month, level)

    def _repr_html_(self) -> str:
        return self.comparison()._repr_html_()


def _scenario(scenario):
    return load_scenario(scenario) if isinstance(scenario, (str, os.PathLike)) else scenario


def run_seeds(scenario, seeds=range(5), requests: int | None = None, *, progress: bool | None = None,
              keep_first=None) -> SeedRuns:
    """Simulate `scenario` on each seed; keep per-seed metrics (not ledgers, to spare memory).

    `keep_first`, if a list, receives the first seed's Result (so a report can draw from it).
    Progress is shown for more than three seeds unless `progress` says otherwise.
    """
    sc = _scenario(scenario)
    seeds = seed_list(seeds)
    sla_ms = sc.sla.p95_ms
    runs, bases, strategies, spans = [], [], [], []
    show = len(seeds) > 3 if progress is None else progress
    for k, (seed, result) in enumerate(iter_runs(sc, seeds, requests, progress=show)):
        runs.append({**run_metrics(result.ledger, sla_ms), "seed": seed})
        bases.append({**run_metrics(baseline_ledger(result), sla_ms), "seed": seed})
        strategies.append(savings_by_strategy(result.ledger)["saved_usd"].to_dict())
        spans.append(float(result.requests.horizon_s))
        if k == 0 and keep_first is not None:
            keep_first.append(result)
    return SeedRuns(sc.name, seeds, runs, bases, strategies, spans)


def compare_scenarios(baseline, candidate, seeds=range(5), requests: int | None = None,
                      level: float = 0.95) -> Comparison:
    """Two scenarios (e.g. before and after a pipeline change) on the same seeds, paired."""
    b = run_seeds(baseline, seeds, requests)
    c = run_seeds(candidate, seeds, requests)
    return Comparison(b.run_samples, c.run_samples, b.scenario, c.scenario, level)


# --------------------------------------------------------------------------- store


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class StoredBaseline:
    """A named baseline: per-seed metric samples plus a note and when it was saved."""

    name: str
    samples: list[dict]
    note: str = ""
    saved_at: float = 0.0


class BaselineStore:
    """Named baselines as JSON files in one directory (written atomically)."""

    def __init__(self, directory=".costlab/baselines"):
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ConfigError(f"baseline name {name!r}: use letters, digits, '_', '-' or '.' (no paths)")
        return self.directory / f"{name}.json"

    def save(self, name: str, data, *, sla_ms: float | None = None, note: str = "") -> StoredBaseline:
        """Store `data` (a Result, ledger, SeedRuns or metric dicts) as baseline `name`."""
        if isinstance(data, SeedRuns):
            samples = list(data.run_samples)
        else:
            samples = _samples(data, sla_ms)
        stored = StoredBaseline(name, samples, note, time.time())
        path = self._path(name)
        write_json_atomic(path, {"name": name, "note": note, "saved_at": stored.saved_at, "samples": samples},
                          indent=1)
        return stored

    def load(self, name: str) -> StoredBaseline:
        path = self._path(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none saved yet"
            raise ConfigError(f"no baseline named {name!r} in {self.directory} (known: {known})")
        try:
            data = json.loads(path.read_text())
            return StoredBaseline(data["name"], data["samples"], data.get("note", ""), data.get("saved_at", 0.0))
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{path}: not a costlab baseline file ({exc})") from exc

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json")) if self.directory.is_dir() else []

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def compare(self, name: str, candidate, sla_ms: float | None = None, *, candidate_name: str = "candidate",
                level: float = 0.95) -> Comparison:
        """Compare a run (or several seeds of it) with the stored baseline `name`."""
        stored = self.load(name)
        return Comparison(stored.samples, _samples(candidate, sla_ms), name, candidate_name, level)
