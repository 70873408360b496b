"""What the notebooks in `notebooks/` call: scenarios to start from, experiments, plots and self-checks.

A lesson cell asks one question and calls one function here, so the notebook stays short and
the work stays in tested library code:

    from lab import lessons
    base = lessons.scenario_dict("support-chatbot")            # the TOML file as a dict
    table = lessons.compare({"no cache": lessons.variant(base, pipeline=[]),
                             "cache": lessons.variant(base, {"pipeline[cache].capacity": 500})},
                            requests=2000)
    lessons.plot_bars(table, "cost_usd", title="What a cache saves")
    ex = lessons.exercise("03")      # the lesson's "try it": its task, `measure(...)` and `check(...)`
    ex.check(capacity=700)           # shows a pass or a hint; never raises

Every self-check runs its own small simulation (fixed seed and size, stated in the task), so its
verdict depends on the learner's setting only, not on how big the notebook's own runs were.
"""

from __future__ import annotations

import copy
import functools
import html
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.errors import ConfigError, CostlabError

ROOT = Path(__file__).resolve().parents[1]

#: the numbered lessons: (number, notebook file, title)
LESSONS = (
    ("00", "00_start_here.ipynb", "Start here: run a scenario, read the bill"),
    ("01", "01_tokens_and_prices.ipynb", "Tokens and prices"),
    ("02", "02_baselines_and_the_ledger.ipynb", "Baselines and the ledger"),
    ("03", "03_response_caching.ipynb", "Response caching: policies, TTLs, stampedes"),
    ("04", "04_deduplication.ipynb", "In-flight deduplication"),
    ("05", "05_batching.ipynb", "Batching and batch APIs"),
    ("06", "06_prompt_caching.ipynb", "Provider prompt caching"),
    ("07", "07_routing_and_cascades.ipynb", "Routing and cascades: the cost-quality frontier"),
    ("08", "08_rate_limits_and_budgets.ipynb", "Rate limits and budgets"),
    ("09", "09_resilience.ipynb", "Resilience and outages"),
    ("10", "10_digital_twin.ipynb", "A digital twin from a real trace"),
    ("11", "11_analytics.ipynb", "Analytics: KPIs, anomalies, forecasts and a report"),
    ("12", "12_live_providers.ipynb", "Live providers: replay by default, live with keys and a budget"),
    ("13", "13_scale_sweeps.ipynb", "Scale: parameter sweeps"),
)

#: models of the three providers that lesson 01 compares (provider/model as genai-prices names them)
LESSON_MODELS = ("openai/gpt-4o-mini", "openai/gpt-4.1", "anthropic/claude-haiku-4-5",
                 "anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash", "google/gemini-2.5-flash-lite")


# =========================================================================== scenarios


def scenarios_dir() -> Path | None:
    """The repository's `scenarios/` folder: next to the `lab` package in a source checkout, else the
    nearest one above the working directory (an installed costlab, e.g. on Binder, run from
    `notebooks/`); None when there is none."""
    here = Path.cwd()
    for folder in (ROOT, here, *here.parents):
        candidate = folder / "scenarios"
        if (candidate / "support-chatbot.toml").is_file():
            return candidate
    return None


def scenario_path(name: str | Path) -> Path:
    """`"support-chatbot"` -> scenarios/support-chatbot.toml (a path to an existing file is kept)."""
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p.resolve()
    folder = scenarios_dir()
    if folder is None:
        raise ConfigError(f"scenario {str(name)!r}: no scenarios/ folder next to costlab or above {Path.cwd()}; "
                          "run from the repository (or its notebooks/ folder), or give the file's path")
    candidate = folder / f"{p.stem}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(f.stem for f in folder.glob("*.toml")))
    raise ConfigError(f"scenario {str(name)!r}: no such file in {folder}; known: {known}")


def scenario_dict(name: str | Path) -> dict:
    """A scenario file as a plain dict (edit it like the TOML, then `variant` or `build` it)."""
    path = scenario_path(name)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("name", path.stem)
    return data


def build(data: Mapping, path: str | Path | None = None):
    """Validate a scenario dict into a `Scenario` (relative trace paths resolve from `scenarios/`)."""
    from lab.loader import scenario_from_dict

    folder = scenarios_dir() or Path.cwd()
    where = Path(path) if path is not None else folder / f"{data.get('name', 'lesson')}.toml"
    return scenario_from_dict(copy.deepcopy(dict(data)), path=str(where))


def variant(base, changes: Mapping | None = None, *, pipeline=None, name: str | None = None):
    """A Scenario made from `base` (a scenario name or dict) with some fields changed.

    `changes` maps dotted paths, as `lab.sweep` spells them, to new values:
    `{"pipeline[cache].capacity": 500, "traffic.arrivals.rate_per_s": 5}`; `pipeline` replaces
    the whole pipeline with a list of stage dicts. The base is never modified.
    """
    from lab.sweep import set_path

    path = None
    if isinstance(base, (str, Path)):
        path = scenario_path(base)
        data = scenario_dict(base)
    elif isinstance(base, Mapping):
        data = copy.deepcopy(dict(base))
    else:
        raise ConfigError(f"variant: expected a scenario name or dict, got {type(base).__name__}")
    if pipeline is not None:
        data["pipeline"] = [dict(s) for s in pipeline]
    for key, value in (changes or {}).items():
        set_path(data, key, value)
    if name is not None:
        data["name"] = name
    if path is None and isinstance(base, Mapping) and "name" in base and scenarios_dir() is not None:
        candidate = scenarios_dir() / f"{base['name']}.toml"
        path = candidate if candidate.is_file() else None
    return build(data, path)


# =========================================================================== experiments


def run(scenario, seed: int = 0, requests: int | None = None):
    """`lab.simulate` without a progress bar (lessons are small)."""
    from lab.sim import simulate

    return simulate(scenario, seed=seed, requests=requests, progress=False)


def metrics(result) -> dict:
    """The numbers a lesson compares, flat and with units in their names."""
    s = result.summary()
    return {
        "requests": s["requests"], "cost_usd": s["cost_usd"], "baseline_cost_usd": s["baseline_cost_usd"],
        "reduction_pct": s["reduction_pct"], "cache_hit_rate": s["cache_hit_rate"],
        "p50_ms": s["latency_ms"]["p50"], "p95_ms": s["latency_ms"]["p95"], "p99_ms": s["latency_ms"]["p99"],
        "error_rate": s["error_rate"], "sla_violation_rate": s["sla_violation_rate"],
        "quality_mean": s["quality_mean"], "provider_calls": s["provider_calls"],
    }


def run_variants(variants: Mapping, seed: int = 0, requests: int | None = None) -> dict:
    """Simulate each variant (label -> Scenario) on the same seed: label -> Result."""
    return {label: run(s, seed, requests) for label, s in variants.items()}


def table(results: Mapping) -> pd.DataFrame:
    """One row of `metrics` per result (label -> Result)."""
    frame = pd.DataFrame({label: metrics(r) for label, r in results.items()}).T
    frame.index.name = "variant"
    return frame.astype({"requests": int, "provider_calls": int})


def compare(variants: Mapping, seed: int = 0, requests: int | None = None) -> pd.DataFrame:
    """Run every variant on the same request stream and tabulate them (one row each)."""
    return table(run_variants(variants, seed, requests))


def sweep_values(make: Callable, values, seed: int = 0, requests: int | None = None, *,
                 label: str = "value") -> pd.DataFrame:
    """`metrics` of `make(v)` (a Scenario) for each value v, indexed by the value: a one-knob sweep."""
    rows = {v: metrics(run(make(v), seed, requests)) for v in values}
    frame = pd.DataFrame(rows).T
    frame.index.name = label
    return frame


# =========================================================================== plots

BLUE, GREY, GREEN, RED, ORANGE = "#1f77b4", "#9e9e9e", "#2ca02c", "#d62728", "#ff7f0e"
PALETTE = (BLUE, ORANGE, GREEN, RED, "#9467bd", "#8c564b", "#e377c2", "#17becf")

LABELS = {
    "cost_usd": "cost (USD)", "baseline_cost_usd": "cost without optimization (USD)",
    "reduction_pct": "cost reduction (%)", "cache_hit_rate": "cache hit rate", "p50_ms": "p50 latency (ms)",
    "p95_ms": "p95 latency (ms)", "p99_ms": "p99 latency (ms)", "error_rate": "share of requests failed",
    "sla_violation_rate": "share of requests over the SLA or failed", "quality_mean": "mean quality",
    "provider_calls": "provider calls", "cut_share": "share of answers cut off",
    "cost_usd_per_day": "cost per day (USD)", "chars_per_token": "characters per token",
    "max_tenant_spend_usd": "largest tenant's spend (USD)",
}


def _figure(size=(7.0, 3.8)):
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def _guide(ax, hline, hline_label, axis="h"):
    if hline is None:
        return
    line = ax.axhline if axis == "h" else ax.axvline
    line(hline, color=RED, ls="--", lw=1.2, label=hline_label)
    if hline_label:
        ax.legend(fontsize=8, loc="best")


def plot_sweep(frame: pd.DataFrame, y, x: str | None = None, *, y2: str | None = None,
               title: str = "", xlabel: str | None = None, ylabel: str | None = None, logx: bool = False,
               hline: float | None = None, hline_label: str | None = None, y2_hline: float | None = None,
               y2_hline_label: str | None = None, reference: Mapping | None = None) -> Figure:
    """Metric(s) against a knob (the index, or column `x`); optionally a second metric on the right axis.

    `y` is a column or a list of columns; `reference` maps a label to y values at the same x
    (a theory curve, drawn dashed).
    """
    fig, ax = _figure()
    xs = frame.index.to_numpy() if x is None else frame[x].to_numpy()
    ys = [y] if isinstance(y, str) else list(y)
    for k, col in enumerate(ys):
        ax.plot(xs, frame[col].to_numpy(dtype=float), marker="o", color=PALETTE[k % len(PALETTE)], lw=1.8,
                label=_label(col))
    for k, (label, values) in enumerate((reference or {}).items()):
        ax.plot(xs, np.asarray(values, dtype=float), color=PALETTE[(len(ys) + k + 2) % len(PALETTE)], lw=1.4,
                ls="--", label=label)
    ax.set_xlabel(xlabel or (frame.index.name if x is None else x) or "")
    ax.set_ylabel(ylabel or _label(ys[0]), color=BLUE if y2 else "black")
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if hline is not None:
        ax.axhline(hline, color=RED, ls="--", lw=1.2, label=hline_label)
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


def plot_grouped(frame: pd.DataFrame, columns=None, *, title: str = "", ylabel: str = "", log: bool = False) -> Figure:
    """Grouped bars: one group per row, one bar per column."""
    cols = list(columns or frame.columns)
    fig, ax = _figure((8.0, 4.0))
    width = 0.8 / len(cols)
    xs = np.arange(len(frame))
    for k, c in enumerate(cols):
        vals = frame[c].to_numpy(dtype=float)
        ax.bar(xs + (k - (len(cols) - 1) / 2) * width, np.nan_to_num(vals), width, label=_label(str(c)),
               color=PALETTE[k % len(PALETTE)])
    labels = [str(i).split("/")[-1] for i in frame.index]
    ax.set_xticks(xs, labels, fontsize=8, rotation=15 if max(map(len, labels), default=0) > 10 else 0)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=min(3, len(cols)))
    ax.set_title(title)
    return fig


def plot_heatmap(frame: pd.DataFrame, x: str, y: str, value: str, *, title: str = "", fmt: str = "{:.3g}",
                 cmap: str = "viridis", log: bool = False) -> Figure:
    """A value over a two-knob grid (e.g. a `lab.sweep` table), one annotated cell per grid point."""
    from matplotlib.colors import LogNorm, Normalize

    grid = frame.pivot_table(index=y, columns=x, values=value, aggfunc="mean")
    vals = grid.to_numpy(dtype=float)
    norm = LogNorm(np.nanmin(vals), np.nanmax(vals)) if log and np.nanmin(vals) > 0 else Normalize(np.nanmin(vals),
                                                                                                    np.nanmax(vals))
    fig, ax = _figure((6.5, 3.8))
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


def plot_sweep_ci(frame: pd.DataFrame, x: str, metric: str, *, group: str | None = None, title: str = "",
                  hline: float | None = None, hline_label: str | None = None) -> Figure:
    """A `lab.sweep` metric's mean with its 95 % interval against `x`, one line per value of `group`."""
    fig, ax = _figure()
    groups = [(None, frame)] if group is None else list(frame.groupby(group, sort=True))
    for k, (g, part) in enumerate(groups):
        part = part.sort_values(x)
        mean = part[f"{metric}.mean"].to_numpy(dtype=float)
        lo = part[f"{metric}.ci95_low"].to_numpy(dtype=float)
        hi = part[f"{metric}.ci95_high"].to_numpy(dtype=float)
        color = PALETTE[k % len(PALETTE)]
        xs = part[x].to_numpy()
        ax.plot(xs, mean, marker="o", color=color, lw=1.6, label=f"{group} = {g}" if group else metric)
        if np.isfinite(lo).any():
            ax.fill_between(xs, lo, hi, color=color, alpha=0.18)
    if hline is not None:
        ax.axhline(hline, color=RED, ls="--", lw=1.2, label=hline_label)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} (mean, 95 % interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or metric)
    return fig


def plot_bars(frame: pd.DataFrame, y: str, *, title: str = "", ylabel: str | None = None,
              hline: float | None = None, hline_label: str | None = None, fmt: str = "{:,.4g}") -> Figure:
    """One bar per row (the index labels them), with its value written on top."""
    fig, ax = _figure((7.0, 3.6))
    labels = [str(i) for i in frame.index]
    values = frame[y].to_numpy(dtype=float)
    xs = np.arange(len(labels))
    ax.bar(xs, values, color=[PALETTE[k % len(PALETTE)] for k in range(len(labels))], width=0.6)
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


def plot_scatter(frame: pd.DataFrame, x: str, y: str, *, title: str = "", hline: float | None = None,
                 hline_label: str | None = None, vline: float | None = None, vline_label: str | None = None) -> Figure:
    """Each row as a labelled point: a trade-off between two metrics."""
    fig, ax = _figure()
    for k, (label, row) in enumerate(frame.iterrows()):
        ax.scatter(row[x], row[y], color=PALETTE[k % len(PALETTE)], s=45, zorder=3)
        ax.annotate(str(label), (row[x], row[y]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(alpha=0.3)
    _guide(ax, hline, hline_label)
    _guide(ax, vline, vline_label, axis="v")
    ax.set_title(title or f"{_label(y)} against {_label(x)}")
    return fig


def plot_latency_cdfs(results: Mapping, sla_ms: float | None = None, *, title: str = "") -> Figure:
    """Latency distributions of several runs (label -> Result) on one log axis, with the SLA."""
    fig, ax = _figure()
    for k, (label, r) in enumerate(results.items()):
        v = np.sort(np.maximum(r.latency_ms().astype(float), 1e-3))
        ax.plot(v, np.arange(1, len(v) + 1) / len(v), color=PALETTE[k % len(PALETTE)], lw=1.6, label=str(label))
    if sla_ms:
        ax.axvline(sla_ms, color=RED, ls="--", lw=1.2, label=f"SLA {sla_ms:,.0f} ms")
        ax.axhline(0.95, color="#555555", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests answered")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Latency distribution")
    return fig


def _buckets(t_s: np.ndarray, bucket_s: float, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    n = max(1, int(math.ceil(horizon_s / bucket_s)))
    idx = np.minimum((t_s // bucket_s).astype(int), n - 1)
    return idx, np.arange(n) * bucket_s + bucket_s / 2


def _time_axis(horizon_s: float) -> tuple[float, str]:
    return (1.0, "s") if horizon_s <= 900 else (60.0, "min")


def plot_calls_over_time(results: Mapping, bucket_s: float = 30.0, *, title: str = "") -> Figure:
    """Provider calls per second in each time bucket: the baseline (of the first result) and each run."""
    fig, ax = _figure()
    first = next(iter(results.values()))
    t = first.requests.t_arrival_s
    horizon = float(t.max()) if len(t) else bucket_s
    idx, centres = _buckets(t, bucket_s, horizon)
    scale, unit = _time_axis(horizon)
    base = np.bincount(idx, weights=first.baseline.attempts.astype(float), minlength=len(centres)) / bucket_s
    ax.plot(centres / scale, base, color=GREY, lw=1.5, label="without optimization")
    for k, (label, r) in enumerate(results.items()):
        calls = np.bincount(idx, weights=r.run.attempts.astype(float), minlength=len(centres)) / bucket_s
        ax.plot(centres / scale, calls, color=PALETTE[k % len(PALETTE)], lw=1.6, label=str(label))
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel(f"provider calls per second ({bucket_s:g}-s buckets)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Provider calls over time")
    return fig


def plot_outcomes_over_time(result, bucket_s: float = 60.0, *, title: str = "") -> Figure:
    """Share of each outcome (ok, cache_hit, error, ...) per time bucket, stacked."""
    from lab.ledger import OUTCOMES

    fig, ax = _figure()
    t = result.requests.t_arrival_s
    horizon = float(t.max()) if len(t) else bucket_s
    idx, centres = _buckets(t, bucket_s, horizon)
    scale, unit = _time_axis(horizon)
    totals = np.bincount(idx, minlength=len(centres)).astype(float)
    totals[totals == 0] = 1.0
    colors = {"ok": BLUE, "cache_hit": GREEN, "deduplicated": "#17becf", "batched": "#9467bd",
              "rejected": ORANGE, "error": RED}
    bottom = np.zeros(len(centres))
    for code, name in enumerate(OUTCOMES):
        share = np.bincount(idx[result.run.outcome == code], minlength=len(centres)) / totals
        if share.any():
            ax.fill_between(centres / scale, bottom, bottom + share, color=colors[name], alpha=0.8, label=name,
                            step="mid")
            bottom += share
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "How requests ended, over time")
    return fig


def plot_seed_costs(runs, *, title: str = "") -> Figure:
    """Per-seed cost with and without optimization (a `SeedRuns`), and the mean reduction's 95 % interval."""
    from lab.analysis.stats import mean_ci

    seeds = runs.seeds
    base = np.array([b["cost_usd"] for b in runs.baseline_samples])
    opt = np.array([r["cost_usd"] for r in runs.run_samples])
    red = 100 * (1 - opt / base)
    mean, lo, hi = mean_ci(red)
    fig, ax = _figure()
    xs = np.arange(len(seeds))
    ax.bar(xs - 0.2, base, 0.4, color=GREY, label="without optimization")
    ax.bar(xs + 0.2, opt, 0.4, color=BLUE, label="optimized")
    for xi, r in zip(xs, red):
        ax.text(xi + 0.2, opt[xi], f"-{r:.1f} %", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, [f"seed {s}" for s in seeds])
    ax.set_ylabel("cost (USD)")
    ax.set_ylim(0, float(base.max()) * 1.3)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.set_title(title or f"Reduction {mean:.1f} % (95 % interval {lo:.1f} to {hi:.1f} %) over {len(seeds)} seeds")
    return fig


# =========================================================================== lesson 01: tokens and prices


def _split(model: str) -> tuple[str, str]:
    if "/" not in model:
        raise ConfigError(f"model {model!r}: expected provider/model, e.g. 'openai/gpt-4o-mini'")
    provider, name = model.split("/", 1)
    return provider, name


def price_sheet(models=LESSON_MODELS) -> pd.DataFrame:
    """USD per million tokens from genai-prices: input, cached input, cache write, output, batch."""
    from lab.pricing import model_prices

    rows = {}
    for m in models:
        d = model_prices(*_split(m)).describe()
        rows[m] = {"input": d["input_usd_per_mtok"], "cached_input": d["cached_input_usd_per_mtok"],
                   "cache_write": d["cache_write_usd_per_mtok"], "output": d["output_usd_per_mtok"],
                   "batch_input": d["batch_input_usd_per_mtok"], "batch_output": d["batch_output_usd_per_mtok"]}
    frame = pd.DataFrame(rows).T.astype(float)
    frame.index.name = "USD per million tokens"
    return frame


def call_cost_usd(model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
                  batch: bool = False) -> float:
    """What one call costs on `model` ("provider/model"), priced by genai-prices' numbers."""
    from lab.pricing import model_prices

    prices = model_prices(*_split(model))
    if batch:
        if prices.batch is None:
            raise ConfigError(f"{model}: genai-prices has no batch prices for it")
        prices = prices.batch
    return float(prices.cost_usd(np.array([input_tokens]), np.array([output_tokens]),
                                 np.array([cached_input_tokens]))[0])


def call_costs(input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, models=LESSON_MODELS) -> pd.DataFrame:
    """One call's cost on each model: list price, with the cached prefix, and through the batch API."""
    rows = {m: {"list_usd": call_cost_usd(m, input_tokens, output_tokens),
                "cached_usd": call_cost_usd(m, input_tokens, output_tokens, cached_input_tokens),
                "batch_usd": call_cost_usd(m, input_tokens, output_tokens, batch=True)} for m in models}
    frame = pd.DataFrame(rows).T
    frame.index.name = f"{input_tokens:,} in ({cached_input_tokens:,} cached) + {output_tokens:,} out"
    return frame


def token_counts(texts: Mapping[str, str], model: str = "gpt-4o-mini") -> pd.DataFrame:
    """Tokens, characters and characters per token of each text (tiktoken, offline)."""
    from lab.tokens import count_tokens

    rows = {}
    for label, text in texts.items():
        n = count_tokens(text, model)
        rows[label] = {"characters": len(text), "tokens": n, "chars_per_token": len(text) / n if n else math.nan}
    return pd.DataFrame(rows).T


def plot_price_sheet(sheet: pd.DataFrame, *, title: str = "") -> Figure:
    """Each model's input, cached input, output and batch prices, grouped (log scale)."""
    cols = [c for c in ("input", "cached_input", "output", "batch_input", "batch_output") if c in sheet]
    return plot_grouped(sheet, cols, title=title or "Price sheets (genai-prices)",
                        ylabel="USD per million tokens (log)", log=True)


# =========================================================================== lesson 03: cache theory


def che_lru_hit_ratio(catalog: int, alpha: float, capacity: int) -> float:
    """Steady-state LRU hit ratio under Zipf(`alpha`) popularity (Che's approximation).

    Solve sum_i (1 - exp(-q_i T)) = C for the characteristic time T (bisection on log T),
    then hit = sum_i q_i (1 - exp(-q_i T)). Che, Tung & Wang, IEEE JSAC 20(7), 2002.
    """
    from lab.dists import zipf_probabilities

    if capacity >= catalog:
        return 1.0
    q = zipf_probabilities(catalog, alpha)
    lo, hi = -30.0, 60.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.sum(1 - np.exp(-q * math.exp(mid))) < capacity:
            lo = mid
        else:
            hi = mid
    t = math.exp((lo + hi) / 2)
    return float(np.sum(q * (1 - np.exp(-q * t))))


# =========================================================================== lesson 08: budgets


def budget_table(results: Mapping) -> pd.DataFrame:
    """Per run (label -> Result): the largest tenant's spend, rejected and served shares, p95, quality."""
    rows = {}
    for label, r in results.items():
        led, s = r.ledger, r.summary()
        by_tenant = led.groupby("tenant", observed=True)["cost_usd"].sum()
        rows[label] = {"max_tenant_spend_usd": float(by_tenant.max()),
                       "rejected_share": float((led["outcome"] == "rejected").mean()),
                       "served_share": float(led["outcome"].isin(["ok", "cache_hit", "deduplicated", "batched"]).mean()),
                       "p95_ms": s["latency_ms"]["p95"], "quality_mean": s["quality_mean"]}
    frame = pd.DataFrame(rows).T
    frame.index.name = "action"
    return frame


# =========================================================================== lesson 10: twins


def plot_arrival_rates(times: Mapping, bucket_s: float = 60.0, *, title: str = "") -> Figure:
    """Arrivals per `bucket_s` of several request streams (label -> arrival times in seconds)."""
    fig, ax = _figure()
    for k, (label, t) in enumerate(times.items()):
        t = np.asarray(t, dtype=float)
        t = t - t.min() if len(t) else t
        counts = np.bincount((t // bucket_s).astype(int))
        ax.step(np.arange(len(counts)) * bucket_s / 60, counts / bucket_s, where="post", lw=1.3,
                color=PALETTE[k % len(PALETTE)], label=str(label), alpha=0.85)
    ax.set_xlabel("time (min)")
    ax.set_ylabel("requests per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Arrival rate ({bucket_s:g}-s buckets)")
    return fig


def plot_validation(check, *, title: str = "") -> Figure:
    """Relative error of each twin-vs-source metric (`lab.twin.validate`), against its tolerance."""
    t = check.table if hasattr(check, "table") else check
    fig, ax = _figure((7.0, 4.2))
    ys = np.arange(len(t))[::-1]
    err = 100 * t["rel_error"].to_numpy(dtype=float)
    tol = t["tolerance"].to_numpy(dtype=object)
    colors = [GREY if tl is None or (isinstance(tl, float) and math.isnan(tl)) else
              (GREEN if abs(e) <= 100 * tl else RED) for e, tl in zip(err, tol)]
    ax.barh(ys, err, color=colors)
    for y, tl in zip(ys, tol):
        if tl is not None and not (isinstance(tl, float) and math.isnan(tl)):
            ax.plot([-100 * tl, 100 * tl], [y, y], color="#555555", lw=0, marker="|", ms=10)
    ax.set_yticks(ys, list(t["metric"]), fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("twin vs source (%; ticks: the tolerance)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Does the twin reproduce the trace?")
    return fig


# =========================================================================== lesson 12: live calls


def long_system_prompt(n_tokens: int = 2000) -> str:
    """A deterministic system prompt of about `n_tokens` tokens (long enough for provider prompt caches)."""
    from lab.tokens import deterministic_text

    return ("You are the support assistant of an online bookshop. Policies follow.\n"
            + deterministic_text("costlab-lesson-12-policies", n_tokens))


def worst_case_usd(model: str, prompt: str, max_tokens: int, system: str | None = None) -> float:
    """What a `lab.live.Session` reserves for one call before sending it: its worst-case cost in USD.

    The counted prompt (x 1.3 where the tokenizer is an estimate) at the input price plus
    `max_tokens` at the output price; nothing is sent.
    """
    from lab.live import Session
    from lab.providers.sdk import Chat

    provider, name = _split(model)
    session = Session(budget_usd=0.0, base_url="http://127.0.0.1:9")    # never called: only counts
    body = session.adapter(provider).request(name, Chat.of(prompt, system), int(max_tokens))
    return session.worst_case_usd(provider, name, body, int(max_tokens), None)


def calls_table(calls) -> pd.DataFrame:
    """`CallResult`s as a table: tokens, cost and latency of each call."""
    cols = ["provider", "model", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
            "cost_usd", "latency_ms", "replayed"]
    return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in calls])


# =========================================================================== lesson 11: an incident


def with_incident(ledger: pd.DataFrame, start_s: float, end_s: float, factor: float = 3.0) -> pd.DataFrame:
    """A copy of a ledger in which requests arriving in [start_s, end_s) cost `factor` times more.

    A stand-in for an incident (a deploy that tripled prompt sizes for an hour), so an anomaly
    detector has something real to find; the baseline column is left as it was.
    """
    out = ledger.copy()
    mask = (out["t_arrival_s"] >= start_s) & (out["t_arrival_s"] < end_s)
    out.loc[mask, "cost_usd"] = out.loc[mask, "cost_usd"] * factor
    return out


# =========================================================================== self-checks


@dataclass
class Check:
    """A self-check's verdict: shown green or red in a notebook, truthy when passed."""

    lesson: str
    passed: bool
    message: str
    measured: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def _numbers(self) -> str:
        def fmt(v):
            if isinstance(v, float):
                return f"{v:,.4g}"
            return str(v)
        return ", ".join(f"{k} = {fmt(v)}" for k, v in self.measured.items())

    def __repr__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        numbers = f" ({self._numbers()})" if self.measured else ""
        return f"[lesson {self.lesson} self-check: {mark}] {self.message}{numbers}"

    def _repr_html_(self) -> str:
        color, mark = ("#2ca02c", "✓ passed") if self.passed else ("#d62728", "✗ not yet")
        numbers = f"<br><small>{html.escape(self._numbers())}</small>" if self.measured else ""
        return (f'<div style="border-left:4px solid {color};padding:4px 10px">'
                f'<b style="color:{color}">{mark}</b> — {html.escape(self.message)}{numbers}</div>')


class Exercise:
    """A lesson's "try it": a task, a way to explore (`measure`) and a self-check (`check`).

    `reference` holds settings that pass and `wrong` a tempting setting that does not; both
    are plain keyword dicts for `check` (exercises that grade a learner's reading of their own
    run take the `Result` as the first argument instead, and have no fixed reference).
    """

    lesson = ""
    title = ""
    task = ""
    reference: dict = {}
    wrong: dict = {}

    def measure(self, **settings) -> dict:
        raise NotImplementedError

    def check(self, **settings) -> Check:
        raise NotImplementedError

    def _verdict(self, passed: bool, message: str, measured: dict) -> Check:
        return Check(self.lesson, bool(passed), message, measured)

    def _memo(self, key, compute: Callable[[], dict]) -> dict:
        """`compute()` once per key: searches and checks re-measure the same settings."""
        cache = self.__dict__.setdefault("_measured", {})
        if key not in cache:
            cache[key] = compute()
        return dict(cache[key])

    def _repr_html_(self) -> str:
        return (f"<div style='border-left:4px solid #1f77b4;padding:4px 10px'><b>Try it · lesson {self.lesson}: "
                f"{html.escape(self.title)}</b><br>{html.escape(self.task)}</div>")

    def __repr__(self) -> str:
        return f"Try it · lesson {self.lesson}: {self.title}\n{self.task}"


def _smallest(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The smallest integer in [lo, hi] for which the monotone test `ok` holds (hi if none below)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _first(*problems: Check | None) -> Check | None:
    """The first problem found (a failed Check is falsy, so `or` cannot chain them)."""
    return next((p for p in problems if p is not None), None)


def _number(value, name: str, lesson: str, *, integer: bool = False) -> Check | None:
    """A Check explaining a setting that is not a usable number, else None."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value))
    if bad or (integer and float(value) != int(value)):
        kind = "a whole number" if integer else "a number"
        return Check(lesson, False, f"{name} should be {kind}, got {value!r}")
    return None


# --------------------------------------------------------------------------- 00


class ReadTheBill(Exercise):
    lesson, title = "00", "read the bill"
    task = ("From your run's summary, work out what 1,000 requests cost after optimization (in USD) and "
            "which stage saved the most money, then call check(result, cost_per_1k_usd=..., top_stage=...).")

    def reference_for(self, result) -> dict:
        s = result.summary()
        top = max(s["by_stage"], key=lambda k: s["by_stage"][k]["cost_saved_usd"])
        return {"cost_per_1k_usd": 1000 * s["cost_usd"] / s["requests"], "top_stage": top}

    def check(self, result, cost_per_1k_usd=None, top_stage=None) -> Check:
        ref = self.reference_for(result)
        bad = _number(cost_per_1k_usd, "cost_per_1k_usd", self.lesson)
        if bad is not None:
            return bad
        close = math.isclose(float(cost_per_1k_usd), ref["cost_per_1k_usd"], rel_tol=0.01)
        stage_ok = str(top_stage) == ref["top_stage"]
        if close and stage_ok:
            return self._verdict(True, f"${ref['cost_per_1k_usd']:.4f} per 1,000 requests; {ref['top_stage']} "
                                 "saved the most.", {})
        hints = []
        if not close:
            hints.append("cost per 1,000 requests comes from the optimized bill (summary()['cost_usd'], not the "
                         "baseline) and summary()['requests']")
        if not stage_ok:
            hints.append("look at cost_saved_usd of each stage in summary()['by_stage']")
        return self._verdict(False, "; ".join(hints), {"your cost_per_1k_usd": float(cost_per_1k_usd),
                                                       "your top_stage": str(top_stage)})


# --------------------------------------------------------------------------- 01


class CheapestCall(Exercise):
    lesson, title = "01", "the cheapest model for one call"
    task = ("A call sends 3,000 input tokens and gets 500 output tokens back, nothing cached, no batch API. "
            "Which of lessons.LESSON_MODELS is cheapest for it, and what does the call cost in USD? "
            "Call check(model='provider/model', cost_usd=...).")
    input_tokens, output_tokens = 3000, 500
    reference = {"model": "google/gemini-2.5-flash-lite", "cost_usd": 0.0005}
    wrong = {"model": "openai/gpt-4o-mini", "cost_usd": 0.00075}

    def measure(self, model: str) -> dict:
        return {"cost_usd": call_cost_usd(model, self.input_tokens, self.output_tokens)}

    def check(self, model=None, cost_usd=None) -> Check:
        costs = {m: call_cost_usd(m, self.input_tokens, self.output_tokens) for m in LESSON_MODELS}
        best = min(costs, key=costs.get)
        bad = _number(cost_usd, "cost_usd", self.lesson)
        if bad is not None:
            return bad
        if model not in costs:
            return self._verdict(False, f"model should be one of {', '.join(LESSON_MODELS)}", {})
        if model != best:
            return self._verdict(False, f"{model} costs ${costs[model]:.6f} for this call; another model is cheaper "
                                 "(price = input tokens x input price + output tokens x output price, per million)",
                                 {"your model": model})
        if not math.isclose(float(cost_usd), costs[best], rel_tol=0.01):
            return self._verdict(False, "right model; now the cost: 3,000 x input price / 1e6 + 500 x output price / 1e6",
                                 {"your cost_usd": float(cost_usd)})
        return self._verdict(True, f"{best}: ${costs[best]:.6f} per call.", {})


# --------------------------------------------------------------------------- 02


class NoCallShare(Exercise):
    lesson, title = "02", "requests that never reached a provider"
    task = ("With pandas on result.ledger, compute the share of requests answered without a provider call "
            "(outcome 'cache_hit' or 'deduplicated'), then call check(result, share=...).")

    def reference_for(self, result) -> dict:
        out = result.ledger["outcome"]
        return {"share": float(out.isin(["cache_hit", "deduplicated"]).mean())}

    def check(self, result, share=None) -> Check:
        bad = _number(share, "share", self.lesson)
        if bad is not None:
            return bad
        ref = self.reference_for(result)["share"]
        if math.isclose(float(share), ref, abs_tol=1e-6):
            return self._verdict(True, f"{100 * ref:.2f} % of requests cost no provider call.", {})
        hint = ("a share is between 0 and 1, not a percentage" if float(share) > 1 else
                "count both outcomes: ledger['outcome'].isin(['cache_hit', 'deduplicated']).mean()")
        return self._verdict(False, hint, {"your share": float(share)})


# --------------------------------------------------------------------------- 03


class CacheCapacity(Exercise):
    lesson, title = "03", "size a response cache"
    task = ("On the support chatbot (5,000 requests, seed 0, an LRU cache as the only stage), find the smallest "
            "capacity (entries) whose hit rate reaches 40 %. Explore with measure(capacity=...), then "
            "check(capacity=...): it passes within 25 % of the smallest such capacity.")
    requests, seed, target, slack = 5000, 0, 0.40, 1.25
    reference = {"capacity": 700}
    wrong = {"capacity": 5000}

    def measure(self, capacity: int) -> dict:
        def compute():
            s = run(variant("support-chatbot", pipeline=[{"stage": "cache", "capacity": int(capacity)}]),
                    self.seed, self.requests).summary()
            return {"cache_hit_rate": s["cache_hit_rate"], "reduction_pct": s["reduction_pct"]}
        return self._memo(int(capacity), compute)

    @functools.cached_property
    def smallest(self) -> int:
        return _smallest(lambda c: self.measure(c)["cache_hit_rate"] >= self.target, 1, 10_000)

    def check(self, capacity=None) -> Check:
        bad = _number(capacity, "capacity", self.lesson, integer=True)
        if bad is not None:
            return bad
        if capacity < 1:
            return self._verdict(False, "capacity should be at least 1 entry", {})
        hit = self.measure(int(capacity))["cache_hit_rate"]
        measured = {"hit_rate": hit}
        if hit < self.target:
            return self._verdict(False, f"capacity {capacity} reaches only {100 * hit:.1f} % hits: make it bigger",
                                 measured)
        if capacity > self.slack * self.smallest:
            return self._verdict(False, f"{100 * hit:.1f} % hits, but a much smaller cache gets there too: memory "
                                 "is not free (halve it and measure again)", measured)
        return self._verdict(True, f"{capacity} entries reach {100 * hit:.1f} % hits (the smallest that does: "
                             f"{self.smallest}). Zipf popularity: a few hundred entries hold most of the traffic.",
                             measured)


# --------------------------------------------------------------------------- 04


class DedupWindow(Exercise):
    lesson, title = "04", "how long may an answer be reused?"
    task = ("On the bursty social feed (6,000 requests, seed 0, dedup as the only stage, shared across tenants), "
            "find the smallest window_s (whole seconds) at which dedup saves at least 70 % of the bill. "
            "Explore with measure(window_s=...), then check(window_s=...): it passes within 1.5x of the smallest.")
    requests, seed, target, slack = 6000, 0, 70.0, 1.5
    reference = {"window_s": 8}
    wrong = {"window_s": 60}

    def measure(self, window_s: float) -> dict:
        def compute():
            stage = {"stage": "dedup", "shared": True, "window_s": float(window_s)}
            s = run(variant("bursty-social-feed", pipeline=[stage]), self.seed, self.requests).summary()
            return {"reduction_pct": s["reduction_pct"], "followers": s["by_stage"]["dedup"]["followers"],
                    "window_hits": s["by_stage"]["dedup"]["window_hits"]}
        return self._memo(float(window_s), compute)

    @functools.cached_property
    def smallest(self) -> int:
        return _smallest(lambda w: self.measure(w)["reduction_pct"] >= self.target, 0, 120)

    def check(self, window_s=None) -> Check:
        bad = _number(window_s, "window_s", self.lesson)
        if bad is not None:
            return bad
        if window_s < 0:
            return self._verdict(False, "window_s cannot be negative", {})
        red = self.measure(window_s)["reduction_pct"]
        measured = {"reduction_pct": red}
        if red < self.target:
            return self._verdict(False, f"window {window_s:g} s saves {red:.1f} %: reuse answers a little longer",
                                 measured)
        if window_s > self.slack * self.smallest:
            return self._verdict(False, f"{red:.1f} % saved, but answers up to {window_s:g} s old are served where a "
                                 "shorter window already reaches 70 %: shorter is fresher", measured)
        return self._verdict(True, f"{window_s:g} s saves {red:.1f} % (smallest whole window that does: "
                             f"{self.smallest} s).", measured)


# --------------------------------------------------------------------------- 05


class Batching(Exercise):
    lesson, title = "05", "batch the dashboard under an SLA"
    task = ("On the analytics dashboard (4,000 requests, seed 0, a batch stage as the only stage), choose "
            "max_batch_size and window_ms so that cost falls by at least 40 % while p95 latency stays at or "
            "under 4,500 ms. Explore with measure(...), then check(max_batch_size=..., window_ms=...).")
    requests, seed, target_pct, p95_limit_ms = 4000, 0, 40.0, 4500.0
    reference = {"max_batch_size": 5, "window_ms": 150}
    wrong = {"max_batch_size": 20, "window_ms": 150}

    def measure(self, max_batch_size: int, window_ms: float = 150) -> dict:
        stage = {"stage": "batch", "max_batch_size": int(max_batch_size), "window_ms": float(window_ms)}
        s = run(variant("analytics-dashboard-batching", pipeline=[stage]), self.seed, self.requests).summary()
        return {"reduction_pct": s["reduction_pct"], "p95_ms": s["latency_ms"]["p95"]}

    def check(self, max_batch_size=None, window_ms=150) -> Check:
        bad = _first(_number(max_batch_size, "max_batch_size", self.lesson, integer=True),
                     _number(window_ms, "window_ms", self.lesson))
        if bad is not None:
            return bad
        if max_batch_size < 1 or window_ms < 0:
            return self._verdict(False, "max_batch_size should be >= 1 and window_ms >= 0", {})
        m = self.measure(max_batch_size, window_ms)
        if m["reduction_pct"] < self.target_pct:
            return self._verdict(False, f"only {m['reduction_pct']:.1f} % saved: bigger batches share the system "
                                 "prompt among more requests", m)
        if m["p95_ms"] > self.p95_limit_ms:
            return self._verdict(False, f"p95 {m['p95_ms']:,.0f} ms is over 4,500 ms: a batch's answers are "
                                 "generated one after another, so big batches are slow", m)
        return self._verdict(True, f"{m['reduction_pct']:.1f} % cheaper at p95 {m['p95_ms']:,.0f} ms.", m)


# --------------------------------------------------------------------------- 06


class PromptCacheTtl(Exercise):
    lesson, title = "06", "5-minute or 1-hour cache writes?"
    task = ("Anthropic prompt caching on claude-sonnet-4-5 with a 3,000-token system prompt. One workload sends "
            "a request every 10 minutes ('slow'), another one per second ('fast'). For each, which anthropic_ttl "
            "('5m': writes cost 1.25x input; '1h': 2x) gives the lower bill? Explore with "
            "measure(anthropic_ttl=..., rate_per_s=...), then check(slow='5m' or '1h', fast='5m' or '1h').")
    rates = {"slow": 1 / 600, "fast": 1.0}
    reference = {"slow": "1h", "fast": "5m"}
    wrong = {"slow": "5m", "fast": "5m"}

    @staticmethod
    def scenario_dict(anthropic_ttl: str, rate_per_s: float) -> dict:
        return {"name": "prompt-cache-ttl", "requests": 400 if rate_per_s < 0.01 else 3000,
                "traffic": {"arrivals": {"process": "poisson", "rate_per_s": float(rate_per_s)},
                            "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
                            "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.5},
                            "prefix": {"system_tokens": 3000}},
                "providers": [{"name": "anthropic", "model": "claude-sonnet-4-5", "concurrency": 64}],
                "pipeline": [{"stage": "prompt_cache", "rules": "anthropic", "anthropic_ttl": anthropic_ttl}]}

    def measure(self, anthropic_ttl: str, rate_per_s: float) -> dict:
        s = run(build(self.scenario_dict(anthropic_ttl, rate_per_s)), 0).summary()
        return {"cost_usd": s["cost_usd"], "reduction_pct": s["reduction_pct"],
                "block_hit_ratio": s["by_stage"]["prompt_cache"]["block_hit_ratio"]}

    def check(self, slow=None, fast=None) -> Check:
        answers = {"slow": slow, "fast": fast}
        for k, v in answers.items():
            if v not in ("5m", "1h"):
                return self._verdict(False, f"{k} should be '5m' or '1h', got {v!r}", {})
        measured, wrong = {}, []
        for k, rate in self.rates.items():
            cost = {ttl: self.measure(ttl, rate)["cost_usd"] for ttl in ("5m", "1h")}
            best = min(cost, key=cost.get)
            measured[f"{k}: 5m vs 1h reduction"] = (f"{100 * (1 - cost['5m'] / self._base(rate)):.1f} % vs "
                                                     f"{100 * (1 - cost['1h'] / self._base(rate)):.1f} %")
            if answers[k] != best:
                wrong.append(k)
        if wrong:
            return self._verdict(False, f"not the cheaper choice for: {', '.join(wrong)}. A write pays off only if "
                                 "the entry is read again before it expires: compare the gap between requests "
                                 "with each TTL", {})
        return self._verdict(True, "1-hour writes cost more but survive a 10-minute gap; at one request a "
                             "second the 5-minute cache never expires and its cheaper writes win.", measured)

    def _base(self, rate: float) -> float:
        return run(build(self.scenario_dict("5m", rate)), 0).summary()["baseline_cost_usd"]


# --------------------------------------------------------------------------- 07


ROUTING_SCENARIO = {
    "name": "routing-lesson", "duration_s": 3600,
    "description": "mixed-difficulty requests; claude-sonnet-4-5 first (the baseline), cheaper models available",
    "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 2.0},
                "input_tokens": {"dist": "lognormal", "median": 1000, "sigma": 0.6},
                "output_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.5},
                "difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}},
    "providers": [{"name": "anthropic", "model": "claude-sonnet-4-5", "concurrency": 64},
                  {"name": "anthropic", "model": "claude-haiku-4-5", "concurrency": 64},
                  {"name": "google", "model": "gemini-2.5-flash-lite", "concurrency": 64}],
    "pipeline": [],
    "sla": {"p95_ms": 20000},
}
CASCADE_MODELS = ["gemini-2.5-flash-lite", "claude-haiku-4-5", "claude-sonnet-4-5"]


class CascadeThreshold(Exercise):
    lesson, title = "07", "the cheapest cascade that keeps quality"
    task = ("Cascade gemini-2.5-flash-lite -> claude-haiku-4-5 -> claude-sonnet-4-5 on the lesson's routing "
            "scenario (3,000 requests, seed 0). Find the threshold (a multiple of 0.05) with the lowest cost "
            "whose mean quality is at least 0.85. Explore with measure(threshold=...), then check(threshold=...): "
            "it passes within 10 % of the cheapest such threshold's cost.")
    requests, seed, floor, slack = 3000, 0, 0.85, 1.10
    grid = tuple(round(0.05 * k, 2) for k in range(6, 20))
    reference = {"threshold": 0.75}
    wrong = {"threshold": 0.5}

    def measure(self, threshold: float) -> dict:
        def compute():
            stage = {"stage": "cascade", "models": CASCADE_MODELS, "threshold": float(threshold)}
            s = run(variant(ROUTING_SCENARIO, pipeline=[stage]), self.seed, self.requests).summary()
            return {"cost_usd": s["cost_usd"], "reduction_pct": s["reduction_pct"], "quality_mean": s["quality_mean"]}
        return self._memo(round(float(threshold), 6), compute)

    @functools.cached_property
    def best(self) -> tuple[float, dict]:
        feasible = [(t, m) for t in self.grid if (m := self.measure(t))["quality_mean"] >= self.floor]
        return min(feasible, key=lambda tm: tm[1]["cost_usd"])

    def check(self, threshold=None) -> Check:
        bad = _number(threshold, "threshold", self.lesson)
        if bad is not None:
            return bad
        if not 0 <= threshold <= 1:
            return self._verdict(False, "threshold is a quality between 0 and 1", {})
        m = self.measure(threshold)
        if m["quality_mean"] < self.floor:
            return self._verdict(False, f"mean quality {m['quality_mean']:.4f} is below 0.85: escalate more "
                                 "(raise the threshold)", m)
        best_t, best_m = self.best
        if m["cost_usd"] > self.slack * best_m["cost_usd"]:
            return self._verdict(False, "quality holds, but a lower threshold keeps it for less (every "
                                 "escalation pays for a discarded answer)", m)
        return self._verdict(True, f"threshold {threshold:g}: quality {m['quality_mean']:.4f} at "
                             f"{m['reduction_pct']:.1f} % below the all-Sonnet bill.", m)


# --------------------------------------------------------------------------- 08


TPM_SCENARIO = {
    "name": "tpm-lesson", "requests": 3000,
    "description": "a tokens-per-minute limit that counts input + max_tokens, as OpenAI estimates it",
    "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 2.5},
                "input_tokens": {"dist": "lognormal", "median": 400, "sigma": 0.4},
                "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.4},
                "max_tokens": 4096},
    "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 64, "tpm": 200000}],
    "pipeline": [],
    "sla": {"p95_ms": 10000},
}


class MaxTokens(Exercise):
    lesson, title = "08", "max_tokens against a TPM limit"
    task = ("gpt-4o-mini with a 200,000 tokens-per-minute limit that counts input + max_tokens (3,000 requests at "
            "2.5/s, seed 0). Choose traffic.max_tokens so that no request is refused with a 429 and fewer than "
            "1 % of answers are cut off. Explore with measure(max_tokens=...), then check(max_tokens=...).")
    seed, max_cut = 0, 0.01
    reference = {"max_tokens": 700}
    wrong = {"max_tokens": 4096}

    def measure(self, max_tokens: int) -> dict:
        r = run(variant(TPM_SCENARIO, {"traffic.max_tokens": int(max_tokens)}), self.seed)
        cut = float(np.mean(r.requests.output_tokens >= r.requests.max_tokens))
        return {"error_rate": r.summary()["error_rate"], "cut_share": cut}

    def check(self, max_tokens=None) -> Check:
        bad = _number(max_tokens, "max_tokens", self.lesson, integer=True)
        if bad is not None:
            return bad
        if max_tokens < 1:
            return self._verdict(False, "max_tokens should be at least 1", {})
        m = self.measure(int(max_tokens))
        if m["error_rate"] > 0:
            return self._verdict(False, f"{100 * m['error_rate']:.1f} % of requests got a 429: every request "
                                 "reserves its max_tokens against the TPM limit, used or not", m)
        if m["cut_share"] >= self.max_cut:
            return self._verdict(False, f"{100 * m['cut_share']:.1f} % of answers are cut off: the cap is below "
                                 "the long answers", m)
        return self._verdict(True, f"max_tokens {max_tokens}: no 429s and {100 * m['cut_share']:.2f} % cut.", m)


# --------------------------------------------------------------------------- 09


class Resilience(Exercise):
    lesson, title = "09", "survive the outage day"
    task = ("On the provider-outage-day scenario (seed 0, all of its 90 minutes), a retry stage with a circuit "
            "breaker after 5 failures. Choose max_attempts (at most 4) and fallback (True/False) so that at most "
            "0.1 % of requests fail. Explore with measure(max_attempts=..., fallback=...), then check(...).")
    seed, max_error_rate, most_attempts = 0, 0.001, 4
    reference = {"max_attempts": 3, "fallback": True}
    wrong = {"max_attempts": 4, "fallback": False}

    def measure(self, max_attempts: int, fallback: bool) -> dict:
        stage = {"stage": "retry", "max_attempts": int(max_attempts), "breaker_failures": 5, "fallback": bool(fallback)}
        s = run(variant("provider-outage-day", pipeline=[stage]), self.seed).summary()
        return {"error_rate": s["error_rate"], "reduction_pct": s["reduction_pct"], "p95_ms": s["latency_ms"]["p95"]}

    def check(self, max_attempts=None, fallback=None) -> Check:
        bad = _number(max_attempts, "max_attempts", self.lesson, integer=True)
        if bad is not None:
            return bad
        if not isinstance(fallback, bool):
            return self._verdict(False, f"fallback should be True or False, got {fallback!r}", {})
        if not 1 <= max_attempts <= self.most_attempts:
            return self._verdict(False, "max_attempts should be between 1 and 4 (more attempts only hammer a "
                                 "provider that is down)", {})
        m = self.measure(max_attempts, fallback)
        if m["error_rate"] > self.max_error_rate:
            hint = ("no number of retries outlasts a 20-minute outage: send the traffic somewhere else"
                    if not fallback else "transient errors need another attempt or two")
            return self._verdict(False, f"{100 * m['error_rate']:.2f} % failed: {hint}", m)
        return self._verdict(True, f"{100 * m['error_rate']:.3f} % failed; the bill is {-m['reduction_pct']:.1f} % "
                             "above list price (the fallback model is dearer): resilience has a price.", m)


# --------------------------------------------------------------------------- 10


class TwinConcurrency(Exercise):
    lesson, title = "10", "size a deployment with the twin"
    task = ("Calibrate a twin of the Azure conversation trace (gpt-4o-mini, SLA p95 8,000 ms). Find the smallest "
            "provider concurrency (slots) at which the twin's p95 latency meets the SLA (seed 0, the twin's full "
            "hour). Explore with measure(concurrency=...), then check(concurrency=...): it passes within 25 % of "
            "the smallest.")
    seed, sla_ms, slack = 0, 8000.0, 1.25
    reference = {"concurrency": 32}
    wrong = {"concurrency": 16}

    @functools.cached_property
    def twin(self):
        from lab.traces import shipped_trace_path
        from lab.twin import calibrate

        return calibrate(shipped_trace_path("azure_conv"), format="azure", sla_p95_ms=self.sla_ms)

    def measure(self, concurrency: int) -> dict:
        import dataclasses

        def compute():
            twin = self.twin
            scenario = twin.replace(providers=(dataclasses.replace(twin.providers[0], concurrency=int(concurrency)),))
            s = run(scenario, self.seed).summary()
            return {"p95_ms": s["latency_ms"]["p95"], "queue_p95_ms": s["queue_ms"]["p95"]}
        return self._memo(int(concurrency), compute)

    @functools.cached_property
    def smallest(self) -> int:
        return _smallest(lambda c: self.measure(c)["p95_ms"] <= self.sla_ms, 1, 256)

    def check(self, concurrency=None) -> Check:
        bad = _number(concurrency, "concurrency", self.lesson, integer=True)
        if bad is not None:
            return bad
        if concurrency < 1:
            return self._verdict(False, "concurrency should be at least 1 slot", {})
        m = self.measure(int(concurrency))
        if m["p95_ms"] > self.sla_ms:
            return self._verdict(False, f"p95 {m['p95_ms']:,.0f} ms: requests queue for a free slot in the trace's "
                                 "bursts; add slots", m)
        if concurrency > self.slack * self.smallest:
            return self._verdict(False, "the SLA holds, but with slots to spare: reserved capacity costs money too", m)
        return self._verdict(True, f"{concurrency} slots: p95 {m['p95_ms']:,.0f} ms (smallest that meets the SLA: "
                             f"{self.smallest}).", m)


# --------------------------------------------------------------------------- 11


class KpiFormula(Exercise):
    lesson, title = "11", "write a KPI"
    task = ("Write a KPI formula (lab.analysis.kpi syntax) for the mean cost of a request that was answered by a "
            "provider (outcome \"ok\"), in USD, and call check(formula='...'). It is evaluated on the support "
            "chatbot's ledger (2,000 requests, seed 0).")
    reference = {"formula": 'mean(cost_usd where outcome == "ok")'}
    wrong = {"formula": "mean(cost_usd)"}

    @functools.cached_property
    def ledger(self) -> pd.DataFrame:
        return run(variant("support-chatbot"), 0, 2000).ledger

    def measure(self, formula: str) -> dict:
        from lab.analysis.kpi import Formula

        return {"value": Formula(formula).evaluate(self.ledger)}

    def check(self, formula=None) -> Check:
        if not isinstance(formula, str) or not formula.strip():
            return self._verdict(False, "formula should be a string such as 'sum(cost_usd)'", {})
        try:
            value = self.measure(formula)["value"]
        except CostlabError as exc:
            return self._verdict(False, f"the formula does not parse: {exc}", {})
        led = self.ledger
        truth = float(led.loc[led["outcome"] == "ok", "cost_usd"].mean())
        if math.isclose(value, truth, rel_tol=1e-9):
            return self._verdict(True, f"${truth:.6f} per provider-answered request.", {"value": value})
        return self._verdict(False, "not the mean over provider-answered requests: a cache hit costs $0 and pulls "
                             "the mean down; restrict it with `where outcome == \"ok\"`", {"value": value})


# --------------------------------------------------------------------------- 12


class LiveBudget(Exercise):
    lesson, title = "12", "max_tokens under a spend cap"
    task = ("A Session refuses a call unless its worst case fits the budget. For one call to "
            "anthropic/claude-sonnet-4-5 with the prompt lessons.LIVE_PROMPT and a $0.01 budget, what is the "
            "largest max_tokens that is still accepted? Explore with measure(max_tokens=...), then "
            "check(max_tokens=...): it passes at 90 % or more of the largest.")
    model, budget_usd = "anthropic/claude-sonnet-4-5", 0.01
    reference = {"max_tokens": 590}
    wrong = {"max_tokens": 1000}

    def measure(self, max_tokens: int) -> dict:
        worst = worst_case_usd(self.model, LIVE_PROMPT, int(max_tokens))
        return {"worst_case_usd": worst, "fits": worst <= self.budget_usd + 1e-12}

    @functools.cached_property
    def largest(self) -> int:
        return _smallest(lambda n: not self.measure(n)["fits"], 1, 100_000) - 1

    def check(self, max_tokens=None) -> Check:
        bad = _number(max_tokens, "max_tokens", self.lesson, integer=True)
        if bad is not None:
            return bad
        if max_tokens < 1:
            return self._verdict(False, "max_tokens should be at least 1", {})
        m = self.measure(int(max_tokens))
        if not m["fits"]:
            return self._verdict(False, f"worst case ${m['worst_case_usd']:.5f} is over the $0.01 budget: the "
                                 "session would refuse it", m)
        if max_tokens < 0.9 * self.largest:
            return self._verdict(False, "accepted, but a longer answer would still fit: worst case = counted "
                                 "prompt x 1.3 (estimated tokenizer) x input price + max_tokens x output price", m)
        return self._verdict(True, f"max_tokens {max_tokens}: worst case ${m['worst_case_usd']:.5f} (largest that "
                             f"fits: {self.largest}).", m)


LIVE_PROMPT = ("You are a support assistant for an online bookshop. A customer writes: my order of three "
               "paperbacks arrived with one book missing and the parcel was damaged. What should I do, and "
               "will I get a refund for the shipping cost? Answer in a friendly, concise way.")


# --------------------------------------------------------------------------- 13


def stale_catalog_dict() -> dict:
    """The catalog scenario with invalidation switched off: a TTL alone decides how stale answers get."""
    data = scenario_dict("catalog-price-updates")
    data["traffic"]["updates"]["rate_per_s"] = 0.3
    data["pipeline"] = [{"stage": "cache", "policy": "lfu", "capacity": 2000, "ttl_s": 60,
                         "invalidate_on_update": False}]
    return data


class SweepChoice(Exercise):
    lesson, title = "13", "choose from a sweep"
    task = ("The catalog without invalidation: a cached answer is wrong once its product changed, until the TTL "
            "expires. Sweep pipeline[cache].ttl_s over SWEEP_TTLS and pipeline[cache].capacity over "
            "SWEEP_CAPACITIES (3,000 requests, seeds 0, 1 and 2). Choose the cheapest point whose mean quality is "
            "at least 0.95 and call check(ttl_s=..., capacity=...): it passes within 2 % of the cheapest.")
    ttls, capacities = (5, 10, 20, 30, 60), (100, 500, 2000)
    seeds, requests, floor = (0, 1, 2), 3000, 0.95
    wrong = {"ttl_s": 60, "capacity": 2000}

    @property
    def reference(self) -> dict:
        """The cheapest feasible grid point (computed: it is what reading the sweep table gives)."""
        (ttl_s, capacity), _ = self.best
        return {"ttl_s": ttl_s, "capacity": capacity}

    def measure(self, ttl_s: float, capacity: int) -> dict:
        def compute():
            point = {"pipeline[cache].ttl_s": float(ttl_s), "pipeline[cache].capacity": int(capacity)}
            runs = [run(variant(stale_catalog_dict(), point), seed, self.requests).summary() for seed in self.seeds]
            return {"cost_usd": float(np.mean([s["cost_usd"] for s in runs])),
                    "quality_mean": float(np.mean([s["quality_mean"] for s in runs]))}
        return self._memo((float(ttl_s), int(capacity)), compute)

    @functools.cached_property
    def best(self) -> tuple[tuple, dict]:
        points = {(t, c): self.measure(t, c) for t in self.ttls for c in self.capacities}
        feasible = {k: v for k, v in points.items() if v["quality_mean"] >= self.floor}
        key = min(feasible, key=lambda k: feasible[k]["cost_usd"])
        return key, feasible[key]

    def check(self, ttl_s=None, capacity=None) -> Check:
        bad = _first(_number(ttl_s, "ttl_s", self.lesson), _number(capacity, "capacity", self.lesson, integer=True))
        if bad is not None:
            return bad
        if ttl_s not in self.ttls or capacity not in self.capacities:
            return self._verdict(False, f"choose ttl_s from {self.ttls} and capacity from {self.capacities} "
                                 "(the grid you swept)", {})
        m = self.measure(ttl_s, capacity)
        if m["quality_mean"] < self.floor:
            return self._verdict(False, f"mean quality {m['quality_mean']:.3f} < 0.95: stale answers; a shorter "
                                 "TTL refreshes them sooner", m)
        (bt, bc), bm = self.best
        if m["cost_usd"] > 1.02 * bm["cost_usd"]:
            return self._verdict(False, "fresh enough, but another grid point is cheaper at the same quality "
                                 "floor: read the sweep table again", m)
        return self._verdict(True, f"ttl_s {ttl_s:g}, capacity {capacity}: quality {m['quality_mean']:.3f} at "
                             f"${m['cost_usd']:.4f} (cheapest feasible: ttl_s {bt:g}, capacity {bc}).", m)


SWEEP_TTLS, SWEEP_CAPACITIES = SweepChoice.ttls, SweepChoice.capacities

_EXERCISES: dict[str, type[Exercise]] = {cls.lesson: cls for cls in (
    ReadTheBill, CheapestCall, NoCallShare, CacheCapacity, DedupWindow, Batching, PromptCacheTtl,
    CascadeThreshold, MaxTokens, Resilience, TwinConcurrency, KpiFormula, LiveBudget, SweepChoice)}


def exercise(lesson: str) -> Exercise:
    """The "try it" of lesson `lesson` ("00" ... "13"); shows its task when displayed.

    One instance per lesson, so what an exercise computed once (a smallest setting, a best
    grid point) is reused by later checks.
    """
    key = str(lesson)[:2].zfill(2)
    if key not in _EXERCISES:
        raise ConfigError(f"lesson {lesson!r}: expected one of {', '.join(sorted(_EXERCISES))}")
    return _exercise(key)


@functools.cache
def _exercise(key: str) -> Exercise:
    return _EXERCISES[key]()
