"""Every chart costlab draws, for lessons, dashboards and reports, in one palette.

Each function takes a `Result`, a ledger DataFrame or a table of metrics, draws on `ax` where it
accepts one (else on a new figure) and returns the matplotlib Figure, which a notebook displays.
Figures are built with matplotlib's object API (no pyplot state), so they work under any backend
and in threads. Dollar labels come from `lab.fmt`, axis labels from `lab.runs.LABELS`.

    import lab, lab.plots as plots
    r = lab.simulate(lab.load_scenario("scenarios/support-chatbot.toml"))
    plots.savings_waterfall(r)
    plots.latency_cdf(r)                                    # against the SLA, with the baseline
    plots.latency_cdf({"small cache": r1, "big cache": r2}, sla_ms=3000)    # several runs
    plots.bars(table, "cost_usd")                           # one bar per row of a lessons.compare table
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from lab import runs
from lab.analysis.attribution import NO_STAGE, attribute, savings_by_strategy
from lab.analysis.frame import as_ledger, cost_series, horizon_s, nice_bucket_s
from lab.analysis.stats import mean_ci
from lab.fmt import usd, usd_axis_decimals
from lab.ledger import ERROR, OUTCOMES, REJECTED

# =========================================================================== palette

#: the one palette (matplotlib's tab10 order); series k of a chart takes PALETTE[k]
BLUE, ORANGE, GREEN, RED, PURPLE, CYAN = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf"
PALETTE = (BLUE, ORANGE, GREEN, RED, PURPLE, "#8c564b", "#e377c2", CYAN)
GREY = "#9e9e9e"
GUIDE = "#555555"            # dotted guides: the 95 % line, waterfall steps, tolerance ticks
#: what a colour means wherever it appears
OPTIMIZED, BASELINE, SAVED, WORSE, FORECAST = BLUE, GREY, GREEN, RED, ORANGE
OUTCOME_COLORS = {"ok": BLUE, "cache_hit": GREEN, "deduplicated": CYAN, "batched": PURPLE, "rejected": ORANGE,
                  "error": RED}

#: axis labels: the run metrics' names, and the columns only lessons tabulate
LABELS = {**runs.LABELS,
          "cut_share": "share of answers cut off",
          "cost_usd_per_day": "cost per day (USD)",
          "chars_per_token": "characters per token",
          "max_tenant_spend_usd": "largest tenant's spend (USD)"}


# =========================================================================== helpers


def _axes(ax=None, size=(7.5, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _color(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def _time_unit(span_s: float) -> tuple[float, str]:
    if span_s <= 900:
        return 1.0, "s"
    if span_s <= 3 * 3600:
        return 60.0, "min"
    if span_s <= 3 * 86400:
        return 3600.0, "h"
    return 86400.0, "days"


def _bucket_label(bucket_s: float) -> str:
    if bucket_s % 86400 == 0:
        return f"{bucket_s / 86400:g} day" + ("s" if bucket_s > 86400 else "")
    if bucket_s % 3600 == 0:
        return f"{bucket_s / 3600:g} h"
    if bucket_s % 60 == 0:
        return f"{bucket_s / 60:g} min"
    return f"{bucket_s:g} s"


def _usd_axis(axis) -> None:
    """Dollar tick labels with one precision for the whole axis, chosen from its range."""
    lo, hi = axis.get_view_interval()
    decimals = usd_axis_decimals(max(abs(lo), abs(hi)))
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"${x:,.{decimals}f}"))


def _guide(ax, value: float | None, label: str | None, axis: str = "h") -> None:
    """A dashed red reference line (a limit, a target) across the axes, in the legend when labelled."""
    if value is None:
        return
    line = ax.axhline if axis == "h" else ax.axvline
    line(value, color=WORSE, ls="--", lw=1.2, label=label)
    if label:
        ax.legend(fontsize=8, loc="best")


def _buckets(t_s: np.ndarray, bucket_s: float, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Each arrival's bucket index, and the buckets' centres (s)."""
    n = max(1, int(math.ceil(horizon / bucket_s)))
    idx = np.minimum((t_s // bucket_s).astype(int), n - 1)
    return idx, np.arange(n) * bucket_s + bucket_s / 2


def _latencies(data, baseline: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every request's latency (ms) of a `Result` (or its baseline) or a ledger, and which ones failed.

    A rejected or failed request was never answered: its latency (0 ms, or the time to fail) is
    not a response time, so a latency chart keeps it apart.
    """
    if callable(getattr(data, "latency_ms", None)) and hasattr(data, "run"):
        arrays = data.baseline if baseline else data.run
        failed = (arrays.outcome == ERROR) | (arrays.outcome == REJECTED)
        return np.asarray(data.latency_ms(baseline=baseline), dtype=np.float64), np.asarray(failed)
    ledger = as_ledger(data)
    failed = ledger["outcome"].astype(str).isin(["error", "rejected"]).to_numpy()
    return ledger["latency_ms"].to_numpy(dtype=np.float64), failed


# =========================================================================== one run over time


def cost_over_time(data, bucket_s: float | None = None, ax=None, *, baseline: bool = True, forecast=None,
                   anomalies: pd.DataFrame | None = None, title: str | None = None) -> Figure:
    """Cost per time bucket, optimized vs baseline; optional forecast band and anomaly marks."""
    led = as_ledger(data)
    bucket_s = bucket_s or nice_bucket_s(horizon_s(led))
    fig, ax = _axes(ax)
    run = cost_series(led, bucket_s)
    span = float(run.index[-1] + bucket_s) if len(run) else 0.0
    if forecast is not None:
        span = max(span, float(forecast.t_start_s[-1] + bucket_s))
    scale, unit = _time_unit(span)
    x = (run.index.to_numpy() + bucket_s / 2) / scale
    if baseline:
        base = cost_series(led, bucket_s, baseline=True)
        ax.plot(x, base.to_numpy(), color=BASELINE, lw=1.5, label="without optimization")
    ax.plot(x, run.to_numpy(), color=OPTIMIZED, lw=1.8, label="optimized")
    if forecast is not None:
        fx = (forecast.t_start_s + bucket_s / 2) / scale
        ax.plot(fx, forecast.mean, color=FORECAST, lw=1.5, ls="--", label=f"forecast ({forecast.method})")
        ax.fill_between(fx, forecast.lower, forecast.upper, color=FORECAST, alpha=0.2,
                        label=f"{int(forecast.level * 100)} % interval")
    if anomalies is not None and anomalies["anomaly"].any():
        hits = anomalies[anomalies["anomaly"]]
        ax.scatter((hits.index.to_numpy(dtype=float) + bucket_s / 2) / scale, hits["value"], color=WORSE,
                   zorder=5, s=36, label="anomaly")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel(f"cost per {_bucket_label(bucket_s)}")
    ax.set_ylim(bottom=0)
    _usd_axis(ax.yaxis)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "Cost over time")
    return fig


def calls_over_time(results: Mapping, bucket_s: float = 30.0, *, title: str = "") -> Figure:
    """Provider calls per second in each time bucket: the baseline (of the first result) and each run."""
    fig, ax = _axes(size=(7.0, 3.8))
    first = next(iter(results.values()))
    t = first.requests.t_arrival_s
    horizon = float(t.max()) if len(t) else bucket_s
    idx, centres = _buckets(t, bucket_s, horizon)
    scale, unit = _time_unit(horizon)
    base = np.bincount(idx, weights=first.baseline.attempts.astype(float), minlength=len(centres)) / bucket_s
    ax.plot(centres / scale, base, color=BASELINE, lw=1.5, label="without optimization")
    for k, (label, r) in enumerate(results.items()):
        calls = np.bincount(idx, weights=r.run.attempts.astype(float), minlength=len(centres)) / bucket_s
        ax.plot(centres / scale, calls, color=_color(k), lw=1.6, label=str(label))
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel(f"provider calls per second ({bucket_s:g}-s buckets)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Provider calls over time")
    return fig


def outcomes_over_time(result, bucket_s: float = 60.0, *, title: str = "") -> Figure:
    """Share of each outcome (ok, cache_hit, error, ...) per time bucket, stacked."""
    fig, ax = _axes(size=(7.0, 3.8))
    t = result.requests.t_arrival_s
    horizon = float(t.max()) if len(t) else bucket_s
    idx, centres = _buckets(t, bucket_s, horizon)
    scale, unit = _time_unit(horizon)
    totals = np.bincount(idx, minlength=len(centres)).astype(float)
    totals[totals == 0] = 1.0
    bottom = np.zeros(len(centres))
    for code, name in enumerate(OUTCOMES):
        share = np.bincount(idx[result.run.outcome == code], minlength=len(centres)) / totals
        if share.any():
            ax.fill_between(centres / scale, bottom, bottom + share, color=OUTCOME_COLORS[name], alpha=0.8,
                            label=name, step="mid")
            bottom += share
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "How requests ended, over time")
    return fig


def arrival_rates(times: Mapping, bucket_s: float = 60.0, *, title: str = "") -> Figure:
    """Arrivals per `bucket_s` of several request streams (label -> arrival times in seconds)."""
    fig, ax = _axes(size=(7.0, 3.8))
    for k, (label, t) in enumerate(times.items()):
        t = np.asarray(t, dtype=float)
        t = t - t.min() if len(t) else t
        counts = np.bincount((t // bucket_s).astype(int))
        ax.step(np.arange(len(counts)) * bucket_s / 60, counts / bucket_s, where="post", lw=1.3,
                color=_color(k), label=str(label), alpha=0.85)
    ax.set_xlabel("time (min)")
    ax.set_ylabel("requests per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Arrival rate ({bucket_s:g}-s buckets)")
    return fig


# =========================================================================== what it cost, what it saved


def savings_waterfall(data, ax=None, *, by: str = "strategy", title: str | None = None) -> Figure:
    """Baseline cost, minus each strategy's saving (pipeline order), down to the optimized cost."""
    led = as_ledger(data)
    table = savings_by_strategy(led, by=by)
    table = table[table.index != NO_STAGE]
    fig, ax = _axes(ax, (7.5, 4.2))
    base = float(led["baseline_cost_usd"].sum())
    final = float(led["cost_usd"].sum())
    labels = ["without\noptimization"]
    bottoms, heights, colors = [0.0], [base], [BASELINE]
    level = base
    for name, row in table.iterrows():
        saved = float(row["saved_usd"])
        labels.append(f"{name}\n−{usd(saved)}" if saved >= 0 else f"{name}\n+{usd(-saved)}")
        bottoms.append(level - saved if saved >= 0 else level)
        heights.append(abs(saved))
        colors.append(SAVED if saved >= 0 else WORSE)
        level -= saved
    labels.append("optimized")
    bottoms.append(0.0)
    heights.append(final)
    colors.append(OPTIMIZED)
    xs = np.arange(len(labels))
    ax.bar(xs, heights, bottom=bottoms, color=colors, width=0.6)
    for k in range(len(xs) - 1):
        top = bottoms[k] + heights[k] if k == 0 or colors[k] != SAVED else bottoms[k]
        ax.plot([xs[k] + 0.3, xs[k + 1] - 0.3], [top, top], color=GUIDE, lw=0.8, ls=":")
    ax.text(xs[0], base, usd(base), ha="center", va="bottom", fontsize=9)
    pct = 100.0 * (1 - final / base) if base else 0.0
    ax.text(xs[-1], final, f"{usd(final)}\n({pct:.1f} % less)", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("cost")
    ax.set_ylim(0, base * 1.15 if base else 1)
    _usd_axis(ax.yaxis)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Where the saving comes from")
    return fig


def seed_costs(seed_runs, *, title: str = "") -> Figure:
    """Per-seed cost with and without optimization (a `SeedRuns`), and the mean reduction's 95 % interval."""
    seeds = seed_runs.seeds
    base = np.array([b["cost_usd"] for b in seed_runs.baseline_samples])
    opt = np.array([r["cost_usd"] for r in seed_runs.run_samples])
    red = 100 * (1 - opt / base)
    mean, lo, hi = mean_ci(red)
    fig, ax = _axes(size=(7.0, 3.8))
    xs = np.arange(len(seeds))
    ax.bar(xs - 0.2, base, 0.4, color=BASELINE, label="without optimization")
    ax.bar(xs + 0.2, opt, 0.4, color=OPTIMIZED, label="optimized")
    for xi, r in zip(xs, red):
        ax.text(xi + 0.2, opt[xi], f"-{r:.1f} %", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, [f"seed {s}" for s in seeds])
    ax.set_ylabel("cost (USD)")
    ax.set_ylim(0, float(base.max()) * 1.3)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.set_title(title or f"Reduction {mean:.1f} % (95 % interval {lo:.1f} to {hi:.1f} %) over {len(seeds)} seeds")
    return fig


def attribution_bars(data, by="tenant", teams: dict[str, str] | None = None, ax=None, *,
                     top: int = 12, title: str | None = None) -> Figure:
    """Cost paid and cost saved per group (tenant, team, feature, model, ...), largest first."""
    led = as_ledger(data)
    table = attribute(led, by, teams=teams).head(top)

    def name(k) -> str:
        return "no provider call" if k == "none" and not isinstance(by, list) and by in ("model", "provider") else str(k)
    labels = [" / ".join(map(str, k)) if isinstance(k, tuple) else name(k) for k in table.index]
    fig, ax = _axes(ax, (7.5, max(2.5, 0.45 * len(labels) + 1.5)))
    y = np.arange(len(labels))[::-1]
    paid = table["cost_usd"].to_numpy()
    saved = np.maximum(table["saved_usd"].to_numpy(), 0.0)
    ax.barh(y, paid, color=OPTIMIZED, label="paid")
    ax.barh(y, saved, left=paid, color=SAVED, alpha=0.6, label="saved by optimization")
    for yi, p, s, pct in zip(y, paid, saved, table["reduction_pct"].to_numpy()):
        ax.text(p + s, yi, f"  {usd(p)} ({pct:.0f} % saved)", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, float((paid + saved).max()) * 1.35 if len(paid) else 1)
    _usd_axis(ax.xaxis)
    ax.set_xlabel("cost")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    group = by if isinstance(by, str) else " / ".join(by)
    ax.set_title(title or f"Cost by {group}")
    return fig


def kpi_over_time(kpi, data, bucket_s: float | None = None, ax=None) -> Figure:
    """A KPI per time bucket with its warning and critical lines."""
    led = as_ledger(data)
    frame = kpi.over_time(led, bucket_s)
    fig, ax = _axes(ax, (7.5, 3.2))
    span = float(frame["t_start_s"].iloc[-1]) if len(frame) else 0.0
    scale, unit = _time_unit(span)
    ax.plot(frame["t_start_s"] / scale, frame["value"], color=OPTIMIZED, lw=1.6, marker=".")
    for level, color, name in ((kpi.warning, FORECAST, "warning"), (kpi.critical, WORSE, "critical")):
        if level is not None:
            ax.axhline(level, color=color, ls="--", lw=1, label=f"{name} {level:g}")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel(f"{kpi.name} ({kpi.unit})" if kpi.unit else kpi.name)
    ax.grid(alpha=0.3)
    if kpi.warning is not None or kpi.critical is not None:
        ax.legend(fontsize=8)
    ax.set_title(kpi.name)
    return fig


# =========================================================================== latency


def latency_cdf(data, sla_ms: float | None = None, ax=None, *, baseline_latency_ms=None,
                title: str | None = None) -> Figure:
    """Share of requests answered within each latency, against the SLA (log time axis).

    `data` is one run (a `Result` or a ledger), drawn with its baseline for contrast when that is
    known, or a mapping label -> run, each drawn in its own colour to compare them.
    """
    fig, ax = _axes(ax)

    def draw(values, color, label, failed=None):
        """Answered requests only; the curve tops out at the answered share, the failed share is in the label."""
        values = np.asarray(values, dtype=np.float64)
        failed = np.zeros(len(values), bool) if failed is None else np.asarray(failed, bool)
        v = np.sort(np.maximum(values[~failed], 1e-3))
        n = max(len(values), 1)
        y = np.arange(1, len(v) + 1) / n
        step = max(1, len(v) // 4000)         # enough points for a smooth curve, small files
        if failed.any():
            label = f"{label} ({100 * failed.mean():.1f} % never answered: not drawn)"
        ax.plot(v[::step], y[::step], color=color, lw=1.8, label=label)
        return values, failed

    def slower(drawn) -> float:
        values, failed = drawn
        return 100 * float(((values > sla_ms) & ~failed).mean()) if len(values) else 0.0

    if isinstance(data, Mapping):
        for k, (label, run) in enumerate(data.items()):
            values, failed = _latencies(run)
            draw(values, _color(k), str(label), failed)
        note = f"SLA {sla_ms:,.0f} ms" if sla_ms else None
    else:
        if sla_ms is None and hasattr(data, "scenario"):
            sla_ms = data.scenario.sla.limit_ms or None
        b = None
        if baseline_latency_ms is not None:
            b = draw(baseline_latency_ms, BASELINE, "without optimization")
        elif hasattr(data, "run"):
            values, failed = _latencies(data, baseline=True)
            b = draw(values, BASELINE, "without optimization", failed)
        values, failed = _latencies(data)
        v = draw(values, OPTIMIZED, "optimized", failed)
        if sla_ms:
            note = f"SLA {sla_ms:,.0f} ms: {slower(v):.1f} % slower"
            if b is not None:
                note += f" (baseline {slower(b):.1f} %)"
    if sla_ms:
        ax.axvline(sla_ms, color=WORSE, ls="--", lw=1.2, label=note)
        ax.axhline(0.95, color=GUIDE, ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests answered")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "Latency distribution")
    return fig


# =========================================================================== trade-offs


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Points no other point beats on both cost (lower) and quality (higher), cheapest first."""
    p = points.sort_values(["cost_usd", "quality"], ascending=[True, False])
    best_q = -np.inf
    keep = []
    for idx, row in p.iterrows():
        if row["quality"] > best_q:
            keep.append(idx)
            best_q = row["quality"]
    return p.loc[keep]


def cost_quality_frontier(points, ax=None, *, title: str | None = None) -> Figure:
    """Cost against mean quality for several configurations, with the Pareto frontier.

    `points`: a DataFrame or list of dicts with `label`, `cost_usd`, `quality` (e.g. one per
    pipeline variant or threshold); a `Result` or ledger gives its baseline and optimized points.
    """
    is_points = isinstance(points, (list, tuple)) or (isinstance(points, pd.DataFrame) and "label" in points)
    if not is_points:
        led = as_ledger(points)
        points = [{"label": "without optimization", "cost_usd": float(led["baseline_cost_usd"].sum()), "quality": 1.0},
                  {"label": "optimized", "cost_usd": float(led["cost_usd"].sum()),
                   "quality": float(led["quality"].mean()) if "quality" in led else 1.0}]
    frame = pd.DataFrame(points).reset_index(drop=True)
    fig, ax = _axes(ax)
    front = pareto_front(frame)
    on_front = frame.index.isin(front.index)
    ax.scatter(frame.loc[~on_front, "cost_usd"], frame.loc[~on_front, "quality"], color=BASELINE, s=40,
               label="dominated", zorder=3)
    ax.scatter(front["cost_usd"], front["quality"], color=OPTIMIZED, s=50, label="frontier", zorder=4)
    ax.plot(front["cost_usd"], front["quality"], color=OPTIMIZED, lw=1.2, drawstyle="steps-post")
    for k, (_, row) in enumerate(frame.sort_values("cost_usd").iterrows()):   # alternate labels above/below
        ax.annotate(str(row["label"]), (row["cost_usd"], row["quality"]), textcoords="offset points",
                    xytext=(4, 6 if k % 2 == 0 else -13), fontsize=8)
    ax.set_xlabel("cost")
    ax.set_ylabel("mean quality (1 = every answer right)")
    lo = float(frame["quality"].min())
    pad = max(0.02, 0.25 * (1.0 - lo))
    ax.set_ylim(max(0.0, lo - pad), 1.0 + 0.5 * pad)
    ax.set_xlim(0, float(frame["cost_usd"].max()) * 1.2 or 1.0)
    _usd_axis(ax.xaxis)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Cost against quality")
    return fig


def scatter(frame: pd.DataFrame, x: str, y: str, *, title: str = "", hline: float | None = None,
            hline_label: str | None = None, vline: float | None = None, vline_label: str | None = None) -> Figure:
    """Each row as a labelled point: a trade-off between two metrics."""
    fig, ax = _axes(size=(7.0, 3.8))
    for k, (label, row) in enumerate(frame.iterrows()):
        ax.scatter(row[x], row[y], color=_color(k), s=45, zorder=3)
        ax.annotate(str(label), (row[x], row[y]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(alpha=0.3)
    _guide(ax, hline, hline_label)
    _guide(ax, vline, vline_label, axis="v")
    ax.set_title(title or f"{_label(y)} against {_label(x)}")
    return fig


def tokens_by_part(report, *, title: str = "") -> Figure:
    """Where a bill's tokens go: tokens and cost per part (system, history, user, tools, framing, output).

    `report` is a `lab.analysis.token_analyzer.TokenReport` (or its `by_part()` frame). Tokens and
    dollars side by side, because output tokens cost several times input ones.
    """
    parts = report.by_part() if hasattr(report, "by_part") else report
    parts = parts[parts["tokens"] > 0]
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_t, ax_c = fig.subplots(1, 2, sharey=True)
    labels = [str(p) for p in parts.index]
    colors = [_color(k) for k in range(len(labels))]
    ax_t.barh(labels, parts["tokens"], color=colors)
    ax_c.barh(labels, parts["cost_usd"], color=colors)
    for ax, col, show in ((ax_t, "tokens", lambda v: f"{v:,.0f}"), (ax_c, "cost_usd", usd)):
        for k, v in enumerate(parts[col]):
            ax.annotate(show(v), (v, k), textcoords="offset points", xytext=(3, -3), fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        ax.margins(x=0.25)
    ax_t.invert_yaxis()
    ax_t.set_xlabel("tokens")
    ax_c.set_xlabel("cost (USD)")
    _usd_axis(ax_c.xaxis)
    ax_t.set_title("tokens by part", fontsize=10)
    ax_c.set_title("cost by part", fontsize=10)
    total = float(parts["cost_usd"].sum())
    fig.suptitle(title or f"Where the bill goes: {int(parts['tokens'].sum()):,} tokens, {usd(total)}", fontsize=11)
    return fig


# =========================================================================== tables of runs


def bars(frame: pd.DataFrame, y: str, *, title: str = "", ylabel: str | None = None,
         hline: float | None = None, hline_label: str | None = None, fmt: str = "{:,.4g}") -> Figure:
    """One bar per row (the index labels them), with its value written on top."""
    fig, ax = _axes(size=(7.0, 3.6))
    labels = [str(i) for i in frame.index]
    values = frame[y].to_numpy(dtype=float)
    xs = np.arange(len(labels))
    ax.bar(xs, values, color=[_color(k) for k in range(len(labels))], width=0.6)
    for xi, v in zip(xs, values):
        ax.text(xi, v, fmt.format(v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, labels, fontsize=8, rotation=15 if max(map(len, labels), default=0) > 12 else 0)
    ax.set_ylabel(ylabel or _label(y))
    top = max(float(np.nanmax(values)) if len(values) else 1.0, hline or 0.0)
    ax.set_ylim(min(0.0, float(np.nanmin(values)) * 1.15 if len(values) else 0.0), top * 1.18 or 1.0)
    ax.grid(axis="y", alpha=0.3)
    _guide(ax, hline, hline_label)
    ax.set_title(title or _label(y))
    return fig


def grouped_bars(frame: pd.DataFrame, columns=None, *, title: str = "", ylabel: str = "",
                 log: bool = False) -> Figure:
    """Grouped bars: one group per row, one bar per column."""
    cols = list(columns or frame.columns)
    fig, ax = _axes(size=(8.0, 4.0))
    width = 0.8 / len(cols)
    xs = np.arange(len(frame))
    for k, c in enumerate(cols):
        vals = frame[c].to_numpy(dtype=float)
        ax.bar(xs + (k - (len(cols) - 1) / 2) * width, np.nan_to_num(vals), width, label=_label(str(c)),
               color=_color(k))
    labels = [str(i).split("/")[-1] for i in frame.index]
    ax.set_xticks(xs, labels, fontsize=8, rotation=15 if max(map(len, labels), default=0) > 10 else 0)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=min(3, len(cols)))
    ax.set_title(title)
    return fig


def price_sheet(sheet: pd.DataFrame, *, title: str = "") -> Figure:
    """Each model's input, cached input, output and batch prices (`lessons.price_sheet()`), grouped, log scale."""
    cols = [c for c in ("input", "cached_input", "output", "batch_input", "batch_output") if c in sheet]
    return grouped_bars(sheet, cols, title=title or "Price sheets (genai-prices)",
                        ylabel="USD per million tokens (log)", log=True)


def sweep(frame: pd.DataFrame, y, x: str | None = None, *, y2: str | None = None,
          title: str = "", xlabel: str | None = None, ylabel: str | None = None, logx: bool = False,
          hline: float | None = None, hline_label: str | None = None, y2_hline: float | None = None,
          y2_hline_label: str | None = None, reference: Mapping | None = None) -> Figure:
    """Metric(s) against a knob (the index, or column `x`); optionally a second metric on the right axis.

    `y` is a column or a list of columns; `reference` maps a label to y values at the same x
    (a theory curve, drawn dashed).
    """
    fig, ax = _axes(size=(7.0, 3.8))
    xs = frame.index.to_numpy() if x is None else frame[x].to_numpy()
    ys = [y] if isinstance(y, str) else list(y)
    for k, col in enumerate(ys):
        ax.plot(xs, frame[col].to_numpy(dtype=float), marker="o", color=_color(k), lw=1.8, label=_label(col))
    for k, (label, values) in enumerate((reference or {}).items()):
        ax.plot(xs, np.asarray(values, dtype=float), color=_color(len(ys) + k + 2), lw=1.4, ls="--", label=label)
    ax.set_xlabel(xlabel or (frame.index.name if x is None else x) or "")
    ax.set_ylabel(ylabel or _label(ys[0]), color=BLUE if y2 else "black")
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if hline is not None:
        ax.axhline(hline, color=WORSE, ls="--", lw=1.2, label=hline_label)
    if len(ys) > 1 or reference or hline_label:
        ax.legend(fontsize=8, loc="best")
    if y2 is not None:
        ax2 = ax.twinx()
        ax2.plot(xs, frame[y2].to_numpy(dtype=float), marker="s", color=ORANGE, lw=1.5, ls="--", label=_label(y2))
        ax2.set_ylabel(_label(y2), color=ORANGE)
        if y2_hline is not None:
            ax2.axhline(y2_hline, color=ORANGE, ls=":", lw=1.2, label=y2_hline_label)
            if y2_hline_label:
                ax2.legend(fontsize=8, loc="center right")
    ax.set_title(title or (", ".join(_label(c) for c in ys) + (f" and {_label(y2)}" if y2 else "")))
    return fig


def sweep_ci(frame: pd.DataFrame, x: str, metric: str, *, group: str | None = None, title: str = "",
             hline: float | None = None, hline_label: str | None = None) -> Figure:
    """A `lab.sweep` metric's mean with its 95 % interval against `x`, one line per value of `group`."""
    fig, ax = _axes(size=(7.0, 3.8))
    groups = [(None, frame)] if group is None else list(frame.groupby(group, sort=True))
    for k, (g, part) in enumerate(groups):
        part = part.sort_values(x)
        mean = part[f"{metric}.mean"].to_numpy(dtype=float)
        lo = part[f"{metric}.ci95_low"].to_numpy(dtype=float)
        hi = part[f"{metric}.ci95_high"].to_numpy(dtype=float)
        xs = part[x].to_numpy()
        ax.plot(xs, mean, marker="o", color=_color(k), lw=1.6, label=f"{group} = {g}" if group else metric)
        if np.isfinite(lo).any():
            ax.fill_between(xs, lo, hi, color=_color(k), alpha=0.18)
    if hline is not None:
        ax.axhline(hline, color=WORSE, ls="--", lw=1.2, label=hline_label)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} (mean, 95 % interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or metric)
    return fig


def heatmap(frame: pd.DataFrame, x: str, y: str, value: str, *, title: str = "", fmt: str = "{:.3g}",
            cmap: str = "viridis", log: bool = False) -> Figure:
    """A value over a two-knob grid (e.g. a `lab.sweep` table), one annotated cell per grid point."""
    grid = frame.pivot_table(index=y, columns=x, values=value, aggfunc="mean")
    vals = grid.to_numpy(dtype=float)
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    norm = LogNorm(lo, hi) if log and lo > 0 else Normalize(lo, hi)
    fig, ax = _axes(size=(6.5, 3.8))
    im = ax.imshow(vals, cmap=cmap, norm=norm, aspect="auto", origin="lower")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for (i, j), v in np.ndenumerate(vals):
        r, g, b, _ = im.cmap(im.norm(v))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, shrink=0.85)
    ax.set_title(title or value)
    return fig


def twin_validation(check, *, title: str = "") -> Figure:
    """Relative error of each twin-vs-source metric (`lab.twin.validate`), against its tolerance."""
    t = check.table if hasattr(check, "table") else check
    fig, ax = _axes(size=(7.0, 4.2))
    ys = np.arange(len(t))[::-1]
    err = 100 * t["rel_error"].to_numpy(dtype=float)
    tol = t["tolerance"].to_numpy(dtype=object)

    def has_tolerance(tl) -> bool:
        return tl is not None and not (isinstance(tl, float) and math.isnan(tl))
    colors = [(GREEN if abs(e) <= 100 * tl else RED) if has_tolerance(tl) else GREY for e, tl in zip(err, tol)]
    ax.barh(ys, err, color=colors)
    for y, tl in zip(ys, tol):
        if has_tolerance(tl):
            ax.plot([-100 * tl, 100 * tl], [y, y], color=GUIDE, lw=0, marker="|", ms=10)
    ax.set_yticks(ys, list(t["metric"]), fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("twin vs source (%; ticks: the tolerance)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Does the twin reproduce the trace?")
    return fig


def candidate_reductions(table: pd.DataFrame, target_pct: float, *, title: str = "") -> Figure:
    """Each candidate policy's cost reduction on the public seeds, green where every constraint holds,
    against the challenge's target (`lab.policy.compare`)."""
    fig, ax = _axes(size=(7.0, 0.5 + 0.45 * max(len(table), 2)))
    ys = np.arange(len(table))[::-1]
    ok = table["constraints_met"].to_numpy(dtype=bool)
    ax.barh(ys, table["reduction_pct"].to_numpy(dtype=float), color=[GREEN if m else RED for m in ok])
    ax.set_yticks(ys, [str(name) for name in table.index], fontsize=9)
    ax.axvline(target_pct, color=GUIDE, ls="--", lw=1.2, label=f"target {target_pct:g} %")
    ax.set_xlabel("cost reduction on the public seeds (%; red: a constraint fails)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Which candidate reaches the target, within the constraints?")
    return fig
