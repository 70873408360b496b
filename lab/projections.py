"""Cost projections: per day, week, month and year with seeded confidence intervals, and scale.

`project(scenario, seeds=5, growth_per_month=0.05)` runs the scenario once per seed and turns
each run's cost per request into a cost per day at the scenario's long-run request rate;
the interval is a Student-t 95 % confidence interval of the mean over seeds (how well the
simulation pins down the expected cost, not how much one real day varies). Growth compounds
monthly; cost is taken as proportional to traffic, which overstates the optimized cost when
caches hit more often at higher traffic (the scale analysis shows by how much).

`scale_analysis(scenario, factors=(1, 10, 100))` multiplies every arrival rate and reports
cost per day, p95 latency, errors and where p95 first breaks the SLA (bisecting between the
last factor that meets it and the first that does not).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from lab import fmt
from lab.analysis.stats import mean_ci
from lab.errors import ConfigError
from lab.runs import seed_list, seed_metrics
from lab.scenario import Scenario
from lab.tables import ResultTable
from lab.traces import read_trace
from lab.traffic import mean_rate_per_s

SECONDS_PER_DAY = 86400.0
DAYS_PER_MONTH = 365.25 / 12
HORIZONS_DAYS = {"day": 1.0, "week": 7.0, "month": DAYS_PER_MONTH, "year": 365.25}

# --------------------------------------------------------------------------- rates


def requests_per_day(scenario: Scenario) -> float:
    """The scenario's long-run request rate, per day (a trace: its requests over its span)."""
    a = scenario.traffic.arrivals
    if a.process == "trace":
        tr = read_trace(a.path, a.format, skip_bad_rows=a.skip_bad_rows)
        span_s = float(tr.t_arrival_s[-1]) * a.time_scale
        if span_s <= 0:
            raise ConfigError(f"{a.path}: the trace spans no time, so it has no rate per day")
        return len(tr) / span_s * SECONDS_PER_DAY
    sessions = scenario.traffic.sessions
    turns = sessions.turns.expected if sessions is not None else 1.0   # arrivals open sessions of several turns
    return mean_rate_per_s(a) * turns * SECONDS_PER_DAY


def scale_traffic(scenario: Scenario, factor: float) -> Scenario:
    """The scenario with every arrival rate multiplied by `factor` (a trace: replayed faster)."""
    if factor <= 0:
        raise ConfigError(f"scale factor: expected a number > 0, got {factor:g}")
    a = scenario.traffic.arrivals
    if a.process == "trace":
        scaled = dataclasses.replace(a, time_scale=a.time_scale / factor)
    elif a.process == "mmpp":
        scaled = dataclasses.replace(a, rate_high_per_s=a.rate_high_per_s * factor,
                                     rate_low_per_s=a.rate_low_per_s * factor)
    else:
        scaled = dataclasses.replace(a, rate_per_s=a.rate_per_s * factor)
    traffic = dataclasses.replace(scenario.traffic, arrivals=scaled)
    return scenario.replace(traffic=traffic, name=f"{scenario.name} x{factor:g}")


def expected_requests(scenario: Scenario) -> int:
    """How many requests one run of the scenario makes (about, for a generated process)."""
    if scenario.requests:
        return int(scenario.requests)
    a = scenario.traffic.arrivals
    if a.process == "trace":
        tr = read_trace(a.path, a.format, skip_bad_rows=a.skip_bad_rows)
        if scenario.duration_s:
            return int(np.searchsorted(tr.t_arrival_s * a.time_scale, scenario.duration_s))
        return len(tr)
    turns = scenario.traffic.sessions.turns.expected if scenario.traffic.sessions is not None else 1.0
    return int(round(mean_rate_per_s(a) * turns * (scenario.duration_s or 0.0)))


# --------------------------------------------------------------------------- projections


def per_day_usd(run: dict, requests_per_day: float, baseline: bool = False) -> float:
    """A run's cost per request (a `lab.runs.metrics` dict), scaled to `requests_per_day`."""
    return run["baseline_cost_usd" if baseline else "cost_usd"] / run["requests"] * requests_per_day


def growth_factor(days: float, growth_per_month: float) -> float:
    """Days of traffic in a horizon of `days` when traffic grows `growth_per_month` (compounded)."""
    if growth_per_month <= -1:
        raise ConfigError(f"growth per month: expected a number > -1, got {growth_per_month:g}")
    if abs(growth_per_month) < 1e-12:
        return days
    k = math.log1p(growth_per_month) / DAYS_PER_MONTH   # continuous growth per day
    return math.expm1(k * days) / k


def project(scenario: Scenario, seeds=5, growth_per_month: float = 0.0, requests: int | None = None,
            runs: list[dict] | None = None) -> ResultTable:
    """Cost per day, week, month and year (baseline and optimized) with 95 % intervals over seeds.

    `requests` shortens each run (the cost per request is what carries over); `runs` reuses
    runs already made (`lab.runs.seed_metrics` dicts, e.g. from a what-if).
    """
    runs = runs if runs is not None else seed_metrics(scenario, seeds, requests)
    per_day = requests_per_day(scenario)
    base_day = np.asarray([per_day_usd(r, per_day, baseline=True) for r in runs])
    opt_day = np.asarray([per_day_usd(r, per_day) for r in runs])
    rows = []
    for horizon, days in HORIZONS_DAYS.items():
        f = growth_factor(days, growth_per_month)
        b, o = mean_ci(base_day * f), mean_ci(opt_day * f)
        rows.append({"horizon": horizon, "days": days, "baseline_usd": b.mean, "baseline_ci95_usd": b.half,
                     "optimized_usd": o.mean, "optimized_ci95_usd": o.half, "saved_usd": b.mean - o.mean})
    table = pd.DataFrame(rows)
    growth = f", traffic growing {100 * growth_per_month:g} % a month" if growth_per_month else ""
    notes = [f"{len(runs)} seeds; {per_day:,.0f} requests per day at the scenario's long-run rate{growth}.",
             "± is the 95 % confidence interval of the expected cost (Student t over seeds), "
             "not the day-to-day spread of a real bill.",
             "Cost is taken as proportional to traffic; caches usually hit more often at higher traffic, "
             "so under growth the optimized figures are an upper estimate.",
             _peak_note(runs)]
    formats = {"horizon": str, "days": lambda d: fmt.number(d, 3)}
    for col in ("baseline_usd", "baseline_ci95_usd", "optimized_usd", "optimized_ci95_usd", "saved_usd"):
        formats[col] = fmt.usd
    return ResultTable(f"Cost projection · {scenario.name}", table, notes, formats)


def _peak_note(runs: list[dict]) -> str:
    """The dearest minute at today's traffic: what a per-minute spend guard or alert must allow."""
    opt = mean_ci([r["peak_cost_per_minute_usd"] for r in runs])
    base = mean_ci([r["baseline_peak_cost_per_minute_usd"] for r in runs])
    return (f"Peak cost per minute (the dearest minute of a run, at today's traffic): {fmt.usd(opt.mean)} "
            f"± {fmt.usd(opt.half)} optimized, {fmt.usd(base.mean)} ± {fmt.usd(base.half)} without optimization.")


# --------------------------------------------------------------------------- scale analysis


@dataclasses.dataclass(frozen=True)
class ScalePoint:
    """The runs at one traffic factor (`lab.runs.metrics` dicts, one per seed)."""

    factor: float
    rate_per_s: float
    runs: list[dict]

    def mean(self, metric: str) -> float:
        return float(np.mean([r[metric] for r in self.runs]))


def _scale_point(scenario: Scenario, factor: float, seeds, max_requests: int, rate_per_s: float) -> ScalePoint:
    scaled = scale_traffic(scenario, factor)
    n = min(max(expected_requests(scaled), 1), max_requests)
    return ScalePoint(factor, rate_per_s * factor, seed_metrics(scaled, seeds, requests=n))


def scale_analysis(scenario: Scenario, factors=(1, 10, 100), seeds=3, max_requests: int = 50_000,
                   find_break: bool = True, bisect_steps: int = 5, progress: bool = False) -> ResultTable:
    """Cost per day, p95 latency and error rate at each traffic factor, and where p95 breaks the SLA.

    Runs are capped at `max_requests` requests (a shorter window at high factors): cost per
    request carries over; queues that grow without bound show up as a p95 far above the SLA.
    """
    factors = sorted(float(f) for f in factors)
    base_rate_s = requests_per_day(scenario) / SECONDS_PER_DAY
    steps = factors
    if progress:
        from tqdm.auto import tqdm  # the progress bar is only drawn when asked for

        steps = tqdm(factors, desc=f"{scenario.name}: scale", unit="factor", leave=False)
    points = [_scale_point(scenario, f, seeds, max_requests, base_rate_s) for f in steps]
    sla_ms, metric = scenario.sla.limit_ms, scenario.sla.metric
    rows = []
    for p in points:
        per_day = p.rate_per_s * SECONDS_PER_DAY
        cost = mean_ci([per_day_usd(r, per_day) for r in p.runs])
        p95 = mean_ci([r["p95_ms"] for r in p.runs])
        baseline_per_request = float(np.mean([r["baseline_cost_usd"] / r["requests"] for r in p.runs]))
        rows.append({"traffic": f"x{p.factor:g}", "requests_per_s": p.rate_per_s,
                     "baseline_usd_per_day": baseline_per_request * per_day,
                     "cost_usd_per_day": cost.mean, "cost_ci95": cost.half, "p95_ms": p95.mean, "p95_ci95": p95.half,
                     "peak_cost_per_minute_usd": p.mean("peak_cost_per_minute_usd"),
                     "error_rate": p.mean("error_rate"), "sla_violation_rate": p.mean("sla_violation_rate"),
                     **({"p99_ms": p.mean("p99_ms")} if metric == "p99_ms" else {}),
                     "meets_sla": (p.mean(metric) <= sla_ms) if sla_ms else None})
    table = pd.DataFrame(rows)
    notes = [f"{len(seed_list(seeds))} seeds per factor, runs capped at {max_requests:,} requests."]
    notes.append(_capacity_note(scenario, points[0], base_rate_s))
    if sla_ms:
        notes.append(_break_note(scenario, points, sla_ms, seeds, max_requests, base_rate_s,
                                 find_break, bisect_steps, metric))
    else:
        notes.append("The scenario has no [sla] p95_ms or p99_ms, so no breaking point is searched.")
    formats = {"traffic": str, "baseline_usd_per_day": fmt.usd, "cost_usd_per_day": fmt.usd, "cost_ci95": fmt.usd,
               "peak_cost_per_minute_usd": fmt.usd, "error_rate": lambda x: fmt.share(x, 2), "sla_violation_rate": lambda x: fmt.share(x, 2),
               "p95_ms": fmt.number, "p99_ms": fmt.number, "meets_sla": lambda x: fmt.MISSING if x is None else ("yes" if x else "NO")}
    return ResultTable(f"Scale analysis · {scenario.name}", table, notes, formats)


def _capacity_note(scenario: Scenario, point: ScalePoint, base_rate_s: float) -> str:
    """Utilisation of the first provider's slots (Little's law): past 100 % its queue grows without bound."""
    runs = point.runs
    calls_per_request = float(np.mean([r["provider_calls"] / r["requests"] for r in runs]))
    service_s = float(np.mean([r["mean_service_ms"] for r in runs])) / 1000
    slots = scenario.providers[0].concurrency
    if calls_per_request <= 0 or service_s <= 0:
        return "No request reached a provider, so provider capacity does not limit this scenario."
    busy = point.rate_per_s * calls_per_request * service_s / slots
    saturate = slots / (calls_per_request * service_s)
    return (f"At x{point.factor:g}, {100 * calls_per_request:.0f} % of requests reach the provider and each call "
            f"holds one of its {slots:,} slots for {service_s:,.2f} s on average: utilisation "
            f"{100 * busy:.0f} %. With that share reaching the provider, the slots saturate at about "
            f"{saturate:,.1f} requests/s (x{saturate / base_rate_s:.3g}), beyond which queues grow without bound "
            "(caches that hit more often at higher traffic push this point out).")


def _break_note(scenario, points, sla_ms, seeds, max_requests, base_rate_s, find_break, steps,
                metric: str = "p95_ms") -> str:
    """Where the SLA's percentile (`metric`) crosses its limit as traffic grows, bisected when asked."""
    q = metric[:3]
    ok = [p for p in points if p.mean(metric) <= sla_ms]
    bad = [p for p in points if p.mean(metric) > sla_ms]
    if not bad:
        return (f"{q} stays within the {sla_ms:,.0f} ms SLA up to x{points[-1].factor:g} "
                f"({points[-1].rate_per_s:,.1f} requests/s).")
    first_bad = bad[0]
    below = [p for p in ok if p.factor < first_bad.factor]
    if not below:
        return (f"{q} already breaks the {sla_ms:,.0f} ms SLA at x{first_bad.factor:g} "
                f"({first_bad.mean(metric):,.0f} ms).")
    lo, hi = below[-1].factor, first_bad.factor
    if find_break:
        for _ in range(steps):
            mid = math.sqrt(lo * hi)
            p = _scale_point(scenario, mid, seed_list(seeds)[:2], max_requests, base_rate_s)
            if p.mean(metric) <= sla_ms:
                lo = mid
            else:
                hi = mid
    return (f"{q} crosses the {sla_ms:,.0f} ms SLA between x{lo:.3g} and x{hi:.3g} traffic "
            f"({lo * base_rate_s:,.1f}-{hi * base_rate_s:,.1f} requests/s); at x{first_bad.factor:g} it is "
            f"{first_bad.mean(metric):,.0f} ms.")
