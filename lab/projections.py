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
from collections.abc import Iterable

import numpy as np
import pandas as pd

from lab.errors import ConfigError
from lab.scenario import Scenario
from lab.tables import ResultTable, fmt_number

SECONDS_PER_DAY = 86400.0
DAYS_PER_MONTH = 365.25 / 12
HORIZONS_DAYS = {"day": 1.0, "week": 7.0, "month": DAYS_PER_MONTH, "year": 365.25}

#: two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


# --------------------------------------------------------------------------- seeds and intervals


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    """`5` means seeds 0..4; an iterable is taken as given. At least one seed."""
    out = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not out:
        raise ConfigError("seeds: expected at least one seed")
    return out


def t_quantile_975(dof: int) -> float:
    """Student-t 97.5 % quantile (table to 30 degrees of freedom, Cornish-Fisher above)."""
    if dof <= 0:
        return math.nan
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def mean_ci(values) -> tuple[float, float]:
    """(mean, half-width of its 95 % t interval); the half-width is NaN for a single value."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan
    return mean, float(t_quantile_975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def fmt_ci(mean: float, half: float, digits: int = 4) -> str:
    return fmt_number(mean, digits) if math.isnan(half) else f"{fmt_number(mean, digits)} ± {fmt_number(half, 2)}"


# --------------------------------------------------------------------------- rates


def requests_per_day(scenario: Scenario) -> float:
    """The scenario's long-run request rate, per day (a trace: its requests over its span)."""
    a = scenario.traffic.arrivals
    if a.process == "trace":
        from lab.traces import read_trace

        tr = read_trace(a.path, a.format, skip_bad_rows=a.skip_bad_rows)
        span_s = float(tr.t_arrival_s[-1]) * a.time_scale
        if span_s <= 0:
            raise ConfigError(f"{a.path}: the trace spans no time, so it has no rate per day")
        return len(tr) / span_s * SECONDS_PER_DAY
    from lab.traffic import mean_rate_per_s

    return mean_rate_per_s(a) * SECONDS_PER_DAY


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
        from lab.traces import read_trace

        tr = read_trace(a.path, a.format, skip_bad_rows=a.skip_bad_rows)
        if scenario.duration_s:
            return int(np.searchsorted(tr.t_arrival_s * a.time_scale, scenario.duration_s))
        return len(tr)
    from lab.traffic import mean_rate_per_s

    return int(round(mean_rate_per_s(a) * (scenario.duration_s or 0.0)))


# --------------------------------------------------------------------------- seeded runs


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """What one seed's run says, reduced to the numbers projections and what-ifs need."""

    seed: int
    requests: int
    cost_usd: float
    baseline_cost_usd: float
    p95_ms: float
    sla_violation_rate: float
    error_rate: float
    quality_mean: float
    cache_hit_rate: float
    provider_calls: int
    mean_service_ms: float         # per provider call (what occupies a concurrency slot)
    summary: dict

    @property
    def cost_per_request_usd(self) -> float:
        return self.cost_usd / self.requests

    @property
    def baseline_per_request_usd(self) -> float:
        return self.baseline_cost_usd / self.requests


def run_seeds(scenario: Scenario, seeds, requests: int | None = None) -> list[SeedRun]:
    """Simulate `scenario` once per seed (progress bars off) and keep each run's key numbers."""
    import lab

    out = []
    for seed in seed_list(seeds):
        result = lab.simulate(scenario, seed=seed, requests=requests, progress=False)
        s = result.summary()
        served = result.run.provider >= 0
        service = float(result.run.service_ms[served].mean()) if served.any() else 0.0
        out.append(SeedRun(seed=seed, requests=s["requests"], cost_usd=s["cost_usd"],
                           baseline_cost_usd=s["baseline_cost_usd"], p95_ms=s["latency_ms"]["p95"],
                           sla_violation_rate=s["sla_violation_rate"], error_rate=s["error_rate"],
                           quality_mean=s["quality_mean"], cache_hit_rate=s["cache_hit_rate"],
                           provider_calls=s["provider_calls"], mean_service_ms=service, summary=s))
    return out


# --------------------------------------------------------------------------- projections


def growth_factor(days: float, growth_per_month: float) -> float:
    """Days of traffic in a horizon of `days` when traffic grows `growth_per_month` (compounded)."""
    if growth_per_month <= -1:
        raise ConfigError(f"growth per month: expected a number > -1, got {growth_per_month:g}")
    if abs(growth_per_month) < 1e-12:
        return days
    k = math.log1p(growth_per_month) / DAYS_PER_MONTH   # continuous growth per day
    return math.expm1(k * days) / k


def project(scenario: Scenario, seeds=5, growth_per_month: float = 0.0, requests: int | None = None,
            runs: list[SeedRun] | None = None) -> ResultTable:
    """Cost per day, week, month and year (baseline and optimized) with 95 % intervals over seeds.

    `requests` shortens each run (the cost per request is what carries over); `runs` reuses
    runs already made (e.g. by a what-if).
    """
    runs = runs if runs is not None else run_seeds(scenario, seeds, requests)
    per_day = requests_per_day(scenario)
    base_day = [r.baseline_per_request_usd * per_day for r in runs]
    opt_day = [r.cost_per_request_usd * per_day for r in runs]
    rows = []
    for horizon, days in HORIZONS_DAYS.items():
        f = growth_factor(days, growth_per_month)
        b, bh = mean_ci(np.asarray(base_day) * f)
        o, oh = mean_ci(np.asarray(opt_day) * f)
        rows.append({"horizon": horizon, "days": days, "baseline_usd": b, "baseline_ci95_usd": bh,
                     "optimized_usd": o, "optimized_ci95_usd": oh, "saved_usd": b - o})
    table = pd.DataFrame(rows)
    growth = f", traffic growing {100 * growth_per_month:g} % a month" if growth_per_month else ""
    notes = [f"{len(runs)} seeds; {per_day:,.0f} requests per day at the scenario's long-run rate{growth}.",
             "± is the 95 % confidence interval of the expected cost (Student t over seeds), "
             "not the day-to-day spread of a real bill.",
             "Cost is taken as proportional to traffic; caches usually hit more often at higher traffic, "
             "so under growth the optimized figures are an upper estimate."]
    fmt = {"horizon": str, "days": lambda d: fmt_number(d, 3)}
    for col in ("baseline_usd", "baseline_ci95_usd", "optimized_usd", "optimized_ci95_usd", "saved_usd"):
        fmt[col] = _usd
    return ResultTable(f"Cost projection · {scenario.name}", table, notes, fmt)


def _usd(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:,.4f}"


# --------------------------------------------------------------------------- scale analysis


@dataclasses.dataclass(frozen=True)
class ScalePoint:
    factor: float
    rate_per_s: float
    runs: list[SeedRun]

    def mean(self, attr: str) -> float:
        return float(np.mean([getattr(r, attr) for r in self.runs]))


def _scale_point(scenario: Scenario, factor: float, seeds, max_requests: int, rate_per_s: float) -> ScalePoint:
    scaled = scale_traffic(scenario, factor)
    n = min(max(expected_requests(scaled), 1), max_requests)
    return ScalePoint(factor, rate_per_s * factor, run_seeds(scaled, seeds, requests=n))


def scale_analysis(scenario: Scenario, factors=(1, 10, 100), seeds=3, max_requests: int = 50_000,
                   find_break: bool = True, bisect_steps: int = 5) -> ResultTable:
    """Cost per day, p95 latency and error rate at each traffic factor, and where p95 breaks the SLA.

    Runs are capped at `max_requests` requests (a shorter window at high factors): cost per
    request carries over; queues that grow without bound show up as a p95 far above the SLA.
    """
    factors = sorted(float(f) for f in factors)
    base_rate_s = requests_per_day(scenario) / SECONDS_PER_DAY
    points = [_scale_point(scenario, f, seeds, max_requests, base_rate_s) for f in factors]
    sla_ms = scenario.sla.p95_ms
    rows = []
    for p in points:
        per_day = p.rate_per_s * SECONDS_PER_DAY
        cost, cost_h = mean_ci([r.cost_per_request_usd * per_day for r in p.runs])
        p95, p95_h = mean_ci([r.p95_ms for r in p.runs])
        rows.append({"traffic": f"x{p.factor:g}", "requests_per_s": p.rate_per_s,
                     "baseline_usd_per_day": p.mean("baseline_per_request_usd") * per_day,
                     "cost_usd_per_day": cost, "cost_ci95": cost_h, "p95_ms": p95, "p95_ci95": p95_h,
                     "error_rate": p.mean("error_rate"), "sla_violation_rate": p.mean("sla_violation_rate"),
                     "meets_sla": (p95 <= sla_ms) if sla_ms else None})
    table = pd.DataFrame(rows)
    notes = [f"{len(seed_list(seeds))} seeds per factor, runs capped at {max_requests:,} requests."]
    notes.append(_capacity_note(scenario, points[0], base_rate_s))
    if sla_ms:
        notes.append(_break_note(scenario, points, sla_ms, seeds, max_requests, base_rate_s,
                                 find_break, bisect_steps))
    else:
        notes.append("The scenario has no [sla] p95_ms, so no breaking point is searched.")
    fmt = {"traffic": str, "baseline_usd_per_day": _usd, "cost_usd_per_day": _usd, "cost_ci95": _usd,
           "error_rate": _pct, "sla_violation_rate": _pct, "p95_ms": lambda x: fmt_number(x, 4),
           "meets_sla": lambda x: "-" if x is None else ("yes" if x else "NO")}
    return ResultTable(f"Scale analysis · {scenario.name}", table, notes, fmt)


def _pct(x) -> str:
    return f"{100 * x:.2f} %"


def _capacity_note(scenario: Scenario, point: ScalePoint, base_rate_s: float) -> str:
    """Utilisation of the first provider's slots (Little's law): past 100 % its queue grows without bound."""
    runs = point.runs
    calls_per_request = float(np.mean([r.provider_calls / r.requests for r in runs]))
    service_s = float(np.mean([r.mean_service_ms for r in runs])) / 1000
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


def _break_note(scenario, points, sla_ms, seeds, max_requests, base_rate_s, find_break, steps) -> str:
    ok = [p for p in points if p.mean("p95_ms") <= sla_ms]
    bad = [p for p in points if p.mean("p95_ms") > sla_ms]
    if not bad:
        return (f"p95 stays within the {sla_ms:,.0f} ms SLA up to x{points[-1].factor:g} "
                f"({points[-1].rate_per_s:,.1f} requests/s).")
    first_bad = bad[0]
    below = [p for p in ok if p.factor < first_bad.factor]
    if not below:
        return (f"p95 already breaks the {sla_ms:,.0f} ms SLA at x{first_bad.factor:g} "
                f"({first_bad.mean('p95_ms'):,.0f} ms).")
    lo, hi = below[-1].factor, first_bad.factor
    if find_break:
        for _ in range(steps):
            mid = math.sqrt(lo * hi)
            p = _scale_point(scenario, mid, seed_list(seeds)[:2], max_requests, base_rate_s)
            if p.mean("p95_ms") <= sla_ms:
                lo = mid
            else:
                hi = mid
    return (f"p95 crosses the {sla_ms:,.0f} ms SLA between x{lo:.3g} and x{hi:.3g} traffic "
            f"({lo * base_rate_s:,.1f}-{hi * base_rate_s:,.1f} requests/s); at x{first_bad.factor:g} it is "
            f"{first_bad.mean('p95_ms'):,.0f} ms.")
