"""Charts for notebooks and reports: cost over time, savings waterfall, latency CDF, cost-quality
frontier, attribution bars.

Each function takes a `Result` or a ledger DataFrame, draws on `ax` if given (else on a new
figure) and returns the matplotlib Figure, which a notebook displays. Figures are built with
matplotlib's object API (no pyplot state), so they work under any backend and in threads.

    import lab, lab.plots as plots
    r = lab.simulate(lab.load_scenario("scenarios/support-chatbot.toml"))
    plots.savings_waterfall(r)
    plots.latency_cdf(r)            # against the scenario's SLA, with the baseline for contrast
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from lab.analysis.attribution import NO_STAGE, attribute, savings_by_strategy
from lab.analysis.frame import as_ledger, cost_series, horizon_s, nice_bucket_s

OPTIMIZED = "#1f77b4"
BASELINE = "#9e9e9e"
SAVED = "#2ca02c"
WORSE = "#d62728"
FORECAST = "#ff7f0e"


def _axes(ax, size=(7.5, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _time_unit(span_s: float) -> tuple[float, str]:
    if span_s <= 900:
        return 1.0, "s"
    if span_s <= 3 * 3600:
        return 60.0, "min"
    if span_s <= 3 * 86400:
        return 3600.0, "h"
    return 86400.0, "days"


def _usd(x: float) -> str:
    """A dollar label with the precision its size needs: $1,234, $13.70, $0.203."""
    a = abs(x)
    if a >= 1000:
        return f"${x:,.0f}"
    if a >= 1:
        return f"${x:,.2f}"
    return f"${x:.3g}"


def _usd_axis(axis) -> None:
    """Dollar tick labels with one precision for the whole axis, chosen from its range."""
    lo, hi = axis.get_view_interval()
    span = max(abs(lo), abs(hi))
    decimals = 0 if span >= 20 else 2 if span >= 0.2 else 4
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"${x:,.{decimals}f}"))


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


def _bucket_label(bucket_s: float) -> str:
    if bucket_s % 86400 == 0:
        return f"{bucket_s / 86400:g} day" + ("s" if bucket_s > 86400 else "")
    if bucket_s % 3600 == 0:
        return f"{bucket_s / 3600:g} h"
    if bucket_s % 60 == 0:
        return f"{bucket_s / 60:g} min"
    return f"{bucket_s:g} s"


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
        labels.append(f"{name}\n−{_usd(saved)}" if saved >= 0 else f"{name}\n+{_usd(-saved)}")
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
        ax.plot([xs[k] + 0.3, xs[k + 1] - 0.3], [top, top], color="#555555", lw=0.8, ls=":")
    ax.text(xs[0], base, _usd(base), ha="center", va="bottom", fontsize=9)
    pct = 100.0 * (1 - final / base) if base else 0.0
    ax.text(xs[-1], final, f"{_usd(final)}\n({pct:.1f} % less)", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("cost")
    ax.set_ylim(0, base * 1.15 if base else 1)
    _usd_axis(ax.yaxis)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Where the saving comes from")
    return fig


def latency_cdf(data, sla_ms: float | None = None, ax=None, *, baseline_latency_ms=None,
                title: str | None = None) -> Figure:
    """Share of requests answered within each latency, against the SLA (log time axis)."""
    led = as_ledger(data)
    if sla_ms is None and hasattr(data, "scenario"):
        sla_ms = data.scenario.sla.p95_ms
    if baseline_latency_ms is None and hasattr(data, "latency_ms") and callable(data.latency_ms):
        baseline_latency_ms = data.latency_ms(baseline=True)
    fig, ax = _axes(ax)

    def draw(values, color, label):
        v = np.sort(np.maximum(np.asarray(values, dtype=np.float64), 1e-3))
        y = np.arange(1, len(v) + 1) / len(v)
        step = max(1, len(v) // 4000)         # enough points for a smooth curve, small files
        ax.plot(v[::step], y[::step], color=color, lw=1.8, label=label)
        return v

    if baseline_latency_ms is not None:
        b = draw(baseline_latency_ms, BASELINE, "without optimization")
    v = draw(led["latency_ms"].to_numpy(), OPTIMIZED, "optimized")
    if sla_ms:
        over = float((v > sla_ms).mean())
        note = f"SLA {sla_ms:,.0f} ms: {100 * over:.1f} % slower"
        if baseline_latency_ms is not None:
            note += f" (baseline {100 * float((b > sla_ms).mean()):.1f} %)"
        ax.axvline(sla_ms, color=WORSE, ls="--", lw=1.2, label=note)
        ax.axhline(0.95, color="#555555", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests answered")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "Latency distribution")
    return fig


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
        ax.text(p + s, yi, f"  {_usd(p)} ({pct:.0f} % saved)", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, float((paid + saved).max()) * 1.35 if len(paid) else 1)
    _usd_axis(ax.xaxis)
    ax.set_xlabel("cost")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    name = by if isinstance(by, str) else " / ".join(by)
    ax.set_title(title or f"Cost by {name}")
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
