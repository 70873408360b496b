"""Alerts on a ledger's time series, each with when it fired and when it cleared.

The rules a cost dashboard needs, evaluated every `step_s` of simulated (or recorded) time:

- **budget**: spend since the start of the budget period reaches 50 %, 80 % and 100 % of
  `budget_usd` (info, warning, critical); cleared when a new period starts.
- **SLA violations**: more than 1 % of the requests of the last 5 minutes were slower than
  the SLA or failed.
- **cache hit rate**: under 50 % over the last 5 minutes (only for pipelines with a cache).
- **circuit breaker open**: given a Result whose pipeline has a retry stage, exactly when
  its breakers opened and closed; from a ledger alone, what a standard breaker would do,
  read from the provider errors: open when at least 50 % of the calls of the last 30 s
  failed (10 calls at least), for 30 s at least.

Windows need `min_requests` requests before they can fire, so a quiet minute with one slow
request is not an SLA breach. Spend is counted when a request completes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lab.analysis.frame import as_ledger, horizon_s, served_mask, stage_columns
from lab.errors import ConfigError

COLUMNS = ["rule", "severity", "fired_at_s", "cleared_at_s", "duration_s", "peak", "threshold", "message"]


@dataclass(frozen=True)
class AlertRules:
    """Thresholds of the built-in alert rules (the seed design's defaults)."""

    budget_usd: float | None = None          # per budget period; None: no budget alerts
    budget_period_s: float = 86400.0
    budget_levels: tuple[float, ...] = (0.5, 0.8, 1.0)
    sla_ms: float | None = None               # None: no SLA alert
    sla_violation_rate: float = 0.01
    cache_hit_rate_below: float = 0.5
    window_s: float = 300.0
    step_s: float = 10.0
    min_requests: int = 20
    breaker_error_rate: float = 0.5
    breaker_window_s: float = 30.0
    breaker_min_calls: int = 10
    breaker_open_s: float = 30.0

    def __post_init__(self):
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise ConfigError(f"budget_usd: expected a positive amount, got {self.budget_usd}")
        if self.step_s <= 0 or self.window_s < self.step_s:
            raise ConfigError("alerts: need 0 < step_s <= window_s")


def _severity(level: float) -> str:
    return "critical" if level >= 1.0 else "warning" if level >= 0.8 else "info"


def budget_alerts(ledger: pd.DataFrame, rules: AlertRules) -> list[dict]:
    """Spend crossing each budget level within each budget period."""
    if not rules.budget_usd:
        return []
    done_s = ledger["t_arrival_s"].to_numpy(np.float64)
    if "latency_ms" in ledger:
        done_s = done_s + ledger["latency_ms"].to_numpy(np.float64) / 1000.0
    order = np.argsort(done_s, kind="stable")
    t = done_s[order]
    cost = ledger["cost_usd"].to_numpy(np.float64)[order]
    period = np.floor(t / rules.budget_period_s).astype(np.int64)
    end_s = max(horizon_s(ledger), float(t[-1]) if len(t) else 0.0)
    out = []
    for p in np.unique(period):
        rows = period == p
        spent = np.cumsum(cost[rows])
        times = t[rows]
        next_start = (p + 1) * rules.budget_period_s
        for level in rules.budget_levels:
            limit = level * rules.budget_usd
            hit = np.flatnonzero(spent >= limit)
            if not len(hit):
                continue
            fired = float(times[hit[0]])
            cleared = float(next_start) if next_start <= end_s else math.nan
            out.append(_alert(f"budget {level:.0%}", _severity(level), fired, cleared, float(spent[-1]), limit,
                              f"spend reached {level:.0%} of the ${rules.budget_usd:,.2f} budget "
                              f"(${spent[-1]:,.2f} spent by the end of the period)"))
    return out


def _alert(rule, severity, fired, cleared, peak, threshold, message) -> dict:
    return {"rule": rule, "severity": severity, "fired_at_s": fired, "cleared_at_s": cleared,
            "duration_s": (cleared - fired) if math.isfinite(cleared) else math.nan,
            "peak": peak, "threshold": threshold, "message": message}


def _window_counts(t_s: np.ndarray, weights: np.ndarray, n_steps: int, step_s: float, window_steps: int):
    """Sum of `weights` in the window ending at each step's end (trailing `window_steps` steps)."""
    idx = np.clip((t_s // step_s).astype(np.int64), 0, n_steps - 1)
    per_step = np.bincount(idx, weights=weights, minlength=n_steps)
    csum = np.concatenate([[0.0], np.cumsum(per_step)])
    ends = np.arange(1, n_steps + 1)
    return csum[ends] - csum[np.maximum(ends - window_steps, 0)]


def intervals(active: np.ndarray, step_end_s: np.ndarray) -> list[tuple[int, int | None]]:
    """(first active step, first inactive step after it or None) for each run of True."""
    out = []
    start = None
    for k, a in enumerate(active):
        if a and start is None:
            start = k
        elif not a and start is not None:
            out.append((start, k))
            start = None
    if start is not None:
        out.append((start, None))
    return out


def _rate_alerts(rule: str, severity: str, t_s, hits, totals_mask, rules: AlertRules, threshold: float,
                 below: bool, n_steps: int, message: str) -> list[dict]:
    """A rate over a trailing window crossing `threshold` (above it, or below with `below`)."""
    window_steps = max(1, int(round(rules.window_s / rules.step_s)))
    num = _window_counts(t_s, hits.astype(np.float64), n_steps, rules.step_s, window_steps)
    den = _window_counts(t_s, totals_mask.astype(np.float64), n_steps, rules.step_s, window_steps)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = num / den
    enough = den >= rules.min_requests
    breach = enough & ((rate < threshold) if below else (rate > threshold))
    # hold the last state through windows too thin to judge
    state = np.zeros(n_steps, dtype=bool)
    current = False
    for k in range(n_steps):
        if enough[k]:
            current = bool(breach[k])
        state[k] = current
    ends = (np.arange(n_steps) + 1) * rules.step_s
    out = []
    for a, b in intervals(state, ends):
        seg = rate[a:b if b is not None else n_steps][enough[a:b if b is not None else n_steps]]
        peak = float(seg.min() if below else seg.max()) if len(seg) else math.nan
        cleared = float(ends[b]) if b is not None else math.nan
        out.append(_alert(rule, severity, float(ends[a]), cleared, peak, threshold, message.format(peak=peak)))
    return out


def breaker_transitions_alerts(result) -> list[dict] | None:
    """Exact open intervals from a Result's retry stage (its breakers' transitions), or None."""
    found = None
    for stage in getattr(result, "stages", []) or []:
        for k, breaker in enumerate(getattr(stage, "breakers", []) or []):
            found = found if found is not None else []
            provider = result.providers[k]
            opened = None
            for t, _old, new in breaker.transitions:
                if new == "open" and opened is None:
                    opened = t
                elif new == "closed" and opened is not None:
                    found.append(_alert("circuit breaker open", "critical", float(opened), float(t), math.nan, math.nan,
                                        f"circuit breaker for {provider.name}/{provider.model} open "
                                        f"(calls failed fast or fell back)"))
                    opened = None
            if opened is not None:
                found.append(_alert("circuit breaker open", "critical", float(opened), math.nan, math.nan, math.nan,
                                    f"circuit breaker for {provider.name}/{provider.model} still open at the end"))
    return found


def breaker_alerts(ledger: pd.DataFrame, rules: AlertRules, n_steps: int) -> list[dict]:
    """Circuit-breaker open intervals derived from the ledger's provider errors (or a breaker stage)."""
    t = ledger["t_arrival_s"].to_numpy(np.float64)
    outcome = ledger["outcome"].astype(str).to_numpy()
    breaker_cols = [c for c in stage_columns(ledger) if "breaker" in c]
    ends = (np.arange(n_steps) + 1) * rules.step_s
    if breaker_cols:
        flagged = np.zeros(len(ledger), dtype=bool)
        for c in breaker_cols:
            flagged |= ledger[c].to_numpy(bool)
        rejected = flagged & (outcome == "rejected")
        per_step = np.bincount(np.clip((t[rejected] // rules.step_s).astype(np.int64), 0, n_steps - 1),
                               minlength=n_steps)
        state = per_step > 0
        source = "the breaker stage rejected calls"
    else:
        calls = served_mask(ledger) | (outcome == "error")
        window_steps = max(1, int(round(rules.breaker_window_s / rules.step_s)))
        errs = _window_counts(t, (outcome == "error").astype(np.float64), n_steps, rules.step_s, window_steps)
        total = _window_counts(t, calls.astype(np.float64), n_steps, rules.step_s, window_steps)
        with np.errstate(divide="ignore", invalid="ignore"):
            trip = (total >= rules.breaker_min_calls) & (errs / total >= rules.breaker_error_rate)
        state = np.zeros(n_steps, dtype=bool)
        hold = max(1, int(round(rules.breaker_open_s / rules.step_s)))
        open_until = -1
        for k in range(n_steps):
            if trip[k]:
                open_until = k + hold - 1
            state[k] = k <= open_until
        source = (f"derived: at least {rules.breaker_error_rate:.0%} of provider calls failed over "
                  f"{rules.breaker_window_s:g} s")
    out = []
    for a, b in intervals(state, ends):
        cleared = float(ends[b]) if b is not None else math.nan
        out.append(_alert("circuit breaker open", "critical", float(ends[a]), cleared, math.nan,
                          rules.breaker_error_rate, f"circuit breaker open ({source})"))
    return out


def evaluate_alerts(ledger, rules: AlertRules | None = None, **overrides) -> pd.DataFrame:
    """Every alert the rules raise on this ledger, in firing order (one row each).

    Columns: rule, severity, fired_at_s, cleared_at_s (NaN while still active at the end),
    duration_s, peak (the worst windowed value), threshold, message.
    """
    led = as_ledger(ledger)
    if rules is None:
        sla = overrides.pop("sla_ms", None)
        if sla is None and hasattr(ledger, "scenario"):
            sla = ledger.scenario.sla.p95_ms
        rules = AlertRules(sla_ms=sla, **overrides)
    elif overrides:
        rules = replace(rules, **overrides)
    if not len(led):
        return pd.DataFrame(columns=COLUMNS)
    n_steps = max(1, int(math.ceil(horizon_s(led) / rules.step_s)))
    t = led["t_arrival_s"].to_numpy(np.float64)
    outcome = led["outcome"].astype(str).to_numpy()
    everyone = np.ones(len(led), dtype=bool)
    found = budget_alerts(led, rules)
    if rules.sla_ms:
        latency = led["latency_ms"].to_numpy(np.float64)
        violating = (latency > rules.sla_ms) | np.isin(outcome, ["error", "rejected"])
        found += _rate_alerts("SLA violations", "critical", t, violating, everyone, rules, rules.sla_violation_rate,
                              False, n_steps, f"{{peak:.1%}} of requests over {rules.window_s / 60:g} min were "
                              f"slower than {rules.sla_ms:g} ms or failed (limit {rules.sla_violation_rate:.0%})")
    if any(c.removeprefix("stage_").split("_")[0] in ("cache", "semantic") for c in stage_columns(led)):
        found += _rate_alerts("cache hit rate", "warning", t, outcome == "cache_hit", everyone, rules,
                              rules.cache_hit_rate_below, True, n_steps,
                              f"cache hit rate fell to {{peak:.1%}} over {rules.window_s / 60:g} min "
                              f"(alert below {rules.cache_hit_rate_below:.0%})")
    exact = breaker_transitions_alerts(ledger)
    found += exact if exact is not None else breaker_alerts(led, rules, n_steps)
    frame = pd.DataFrame(found, columns=COLUMNS)
    return frame.sort_values(["fired_at_s", "rule"], kind="stable").reset_index(drop=True)
