"""Interactive dashboards: sliders and dropdowns that re-run a small simulation and redraw its charts.

    from lab.widgets import Dashboard
    Dashboard.playground()                       # cache, budget, cascade threshold and traffic rate
    Dashboard("support-chatbot", knobs=["cache capacity", "cache TTL", "traffic rate"])

Each knob edits one field of the scenario (a dotted path as `lab.sweep` spells it, e.g.
`pipeline[cache].capacity`); knobs whose stage the scenario lacks are left out. Moving a control
schedules a re-run after `debounce_s` of quiet, so dragging a slider runs one simulation, not
fifty. A run that fails shows its one-line error in the dashboard and keeps the last good charts.

Without a browser (tests, scripts), set a control's `.value` and read `dashboard.summary`:
with `debounce_s=0` the run happens at once; otherwise call `dashboard.flush()`. Building a
dashboard runs one small simulation and never waits for input, so a notebook that shows one
runs headless (papermill) like any other cell.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import io
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import ipywidgets as widgets
from matplotlib.figure import Figure

from lab import fmt, plots, runs
from lab.errors import CostlabError
from lab.ledger import ERROR, REJECTED
from lab.lessons.scenarios import build, scenario_dict, scenario_path
from lab.sweep import SweepError, apply_point, child, parse_path, set_path

# =========================================================================== knobs


@dataclass(frozen=True)
class Knob:
    """One control: a label, the scenario field it sets, and the widget that sets it.

    `kind`: "int" (an IntSlider: a whole number never reads "501.2") / "float" (linear slider
    between `low` and `high`), "log" (log slider, for rates spanning decades) or "choice" (a
    dropdown of `options`).
    `default` is used when the scenario does not set the field itself.
    """

    label: str
    path: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    step: float | None = None
    options: tuple = ()
    default: object = None
    help: str = ""
    aliases: tuple = ()             # other names a learner may type for it ("cache size"), for did-you-mean

    def coerce(self, value):
        """The widget's value as the scenario wants it (log sliders give floats)."""
        if self.kind == "int":
            return int(round(float(value)))
        if self.kind in ("float", "log"):
            return float(value)
        return value

    def make_widget(self, value) -> widgets.Widget:
        style, layout = {"description_width": "11em"}, widgets.Layout(width="30em")
        common = {"description": self.label, "style": style, "layout": layout, "continuous_update": False}
        if self.kind == "choice":
            options = list(self.options) if value in self.options else [value, *self.options]
            return widgets.Dropdown(options=options, value=value, description=self.label, style=style, layout=layout)
        if self.kind == "log":
            v = min(max(float(value), self.low), self.high)
            return widgets.FloatLogSlider(value=v, base=10, min=math.log10(self.low), max=math.log10(self.high),
                                          step=self.step or 0.05, readout_format=".4g", **common)
        cls = widgets.IntSlider if self.kind == "int" else widgets.FloatSlider
        v = min(max(value, self.low), self.high)
        return cls(value=v, min=self.low, max=self.high, step=self.step or (1 if self.kind == "int" else 0.01), **common)


KNOBS: dict[str, Knob] = {k.label: k for k in (
    Knob("cache capacity", "pipeline[cache].capacity", "int", 10, 20_000, step=10, default=1000,
         help="entries the response cache holds", aliases=("cache size", "cache entries", "capacity")),
    Knob("cache TTL (s)", "pipeline[cache].ttl_s", "log", 1, 86_400, default=3600, help="how long an answer is reused",
         aliases=("cache ttl", "ttl", "ttl_s")),
    Knob("cache policy", "pipeline[cache].policy", "choice", options=("lru", "lfu", "fifo"), default="lru"),
    Knob("batch window (ms)", "pipeline[batch].window_ms", "float", 0, 2000, step=10, default=200,
         help="how long a batch gathers"),
    Knob("batch size", "pipeline[batch].max_batch_size", "int", 1, 50, default=20),
    Knob("cascade threshold", "pipeline[cascade].threshold", "float", 0, 1, step=0.05, default=0.8,
         help="escalate answers judged below this quality"),
    Knob("router strategy", "pipeline[router].strategy", "choice",
         options=("cheapest", "fastest", "balanced", "quality_first"), default="cheapest"),
    Knob("daily budget (USD)", "pipeline[budget].daily_usd", "log", 0.01, 10_000, default=10,
         aliases=("budget", "daily budget", "daily_usd")),
    Knob("budget action", "pipeline[budget].action", "choice", options=("warn", "queue", "downgrade", "reject"),
         default="reject"),
    Knob("traffic rate (req/s)", "traffic.arrivals.rate_per_s", "log", 0.1, 1000, default=10,
         help="mean arrival rate (Poisson or diurnal traffic)", aliases=("traffic rate", "rate", "rate_per_s")),
)}

#: the knobs `Dashboard` offers by default (those that apply to the scenario are shown)
DEFAULT_KNOBS = tuple(KNOBS)

#: a small product in one file: a cache, a budget and a cascade from gpt-4o-mini to gpt-4o
PLAYGROUND = {
    "name": "playground", "description": "a support assistant: cache, budget, cascade",
    "duration_s": 3600,
    "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 5.0},
                "prompts": {"catalog": 2000, "popularity": {"dist": "zipf", "alpha": 0.9}},
                "input_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.6},
                "output_tokens": {"dist": "lognormal", "median": 250, "sigma": 0.5},
                "difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0},
                "max_tokens": 1024},
    "providers": [{"name": "openai", "model": "gpt-4o", "concurrency": 64},
                  {"name": "openai", "model": "gpt-4o-mini", "concurrency": 64}],
    "pipeline": [{"stage": "cache", "capacity": 500, "ttl_s": 3600},
                 {"stage": "budget", "daily_usd": 100.0, "per": "all", "action": "downgrade",
                  "downgrade_to": "gpt-4o-mini"},
                 {"stage": "cascade", "models": ["gpt-4o-mini", "gpt-4o"], "threshold": 0.8}],
    "sla": {"p95_ms": 12000},
}


def knob_hint(name: str) -> str:
    """A did-you-mean for a knob: its aliases first ("cache size" is the cache's capacity), then spelling."""
    names = {k.label.lower(): k.label for k in KNOBS.values()}
    names.update({a.lower(): k.label for k in KNOBS.values() for a in k.aliases})
    key = str(name).strip().lower()
    if key in names:
        return f" (did you mean {names[key]!r}?)"
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean {names[close[0]]!r}?)" if close else ""


def _applies(data: dict, path: str) -> bool:
    """Whether `path` names a field of a table the scenario has (the field itself may be a default)."""
    probe = copy.deepcopy(data)
    try:
        set_path(probe, path, 0)
    except SweepError:
        return False
    if path == "traffic.arrivals.rate_per_s":
        return data["traffic"]["arrivals"].get("process") in ("poisson", "diurnal")
    return True


def _current(data: dict, path: str, default):
    """The value `path` has in the scenario dict, or `default` when it is not written out."""
    node = data
    try:
        for key in parse_path(path):
            node = child(node, key, path)
    except SweepError:
        return default
    return node


# =========================================================================== debouncing


def default_scheduler(delay_s: float, fn: Callable[[], None]):
    """Call `fn` after `delay_s` on the running event loop (a Jupyter kernel's), else on a timer thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        return loop.call_later(delay_s, fn)
    timer = threading.Timer(delay_s, fn)
    timer.daemon = True            # a pending re-run never keeps a process (or a kernel) alive
    timer.start()
    return timer


class Debouncer:
    """Runs `fn` once, `delay_s` after the last `trigger()`; `flush()` runs a pending call now."""

    def __init__(self, delay_s: float, fn: Callable[[], None], scheduler: Callable | None = None):
        self.delay_s, self.fn = float(delay_s), fn
        self.scheduler = scheduler or default_scheduler
        self._handle = None
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return self._handle is not None

    def trigger(self) -> None:
        if self.delay_s <= 0:
            self.fn()
            return
        with self._lock:
            self._cancel()
            self._generation += 1
            generation = self._generation
            self._handle = self.scheduler(self.delay_s, lambda: self._fire(generation))

    def cancel(self) -> None:
        """Forget a pending call."""
        with self._lock:
            self._cancel()
            self._generation += 1

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._handle is None:
                return                    # superseded by a later trigger, or flushed already
            self._handle = None
        self.fn()

    def flush(self) -> bool:
        """Run the pending call now (True) or do nothing when none is pending (False)."""
        with self._lock:
            if self._handle is None:
                return False
            self._cancel()
            self._generation += 1
        self.fn()
        return True


# =========================================================================== the dashboard


@dataclass
class Run:
    """One dashboard run: the settings it used and the numbers it showed."""

    settings: dict
    cost_usd: float
    baseline_cost_usd: float
    p95_ms: float
    quality_mean: float
    error_rate: float


#: the `lab.runs.metrics` a dashboard run keeps in its history
RUN_METRICS = ("cost_usd", "baseline_cost_usd", "p95_ms", "quality_mean", "error_rate")


@dataclass
class _State:
    result: object = None
    error: str | None = None
    runs: int = 0
    history: list = field(default_factory=list)


class Dashboard:
    """Controls for some scenario fields, and the cost, latency and quality of a small run.

    `scenario`: a scenario name (`scenarios/NAME.toml`), a path, or a scenario dict.
    `knobs`: labels from `KNOBS` or `Knob` objects. `requests` and `seed` size each re-run.
    """

    def __init__(self, scenario="support-chatbot", knobs: Sequence = DEFAULT_KNOBS, *, requests: int = 2000,
                 seed: int = 0, debounce_s: float = 0.4, scheduler: Callable | None = None, quality_floor: float | None = None):
        if isinstance(scenario, Mapping):
            self.base, self.path = copy.deepcopy(dict(scenario)), None
        else:
            self.path = scenario_path(scenario)
            self.base = scenario_dict(self.path)
        self.requests, self.seed, self.quality_floor = int(requests), int(seed), quality_floor
        unknown = [k for k in knobs if not isinstance(k, Knob) and k not in KNOBS]
        if unknown:
            raise CostlabError(f"knob {unknown[0]!r}: expected one of {', '.join(KNOBS)}{knob_hint(unknown[0])}")
        self.knobs = [k if isinstance(k, Knob) else KNOBS[k] for k in knobs]
        self.knobs = [k for k in self.knobs if _applies(self.base, k.path)]
        self.controls: dict[str, widgets.Widget] = {
            k.label: k.make_widget(_current(self.base, k.path, k.default)) for k in self.knobs}
        for k in self.knobs:
            if k.help:
                self.controls[k.label].tooltip = k.help
            self.controls[k.label].observe(self._changed, names="value")
        self.status = widgets.HTML()
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.numbers = widgets.HTML()
        self._state = _State()
        self._lock = threading.Lock()
        self._quiet = False
        self._debouncer = Debouncer(debounce_s, self.update, scheduler)
        title = fmt.html_text(self.base.get("name", "scenario"))
        header = widgets.HTML(f"<b>costlab dashboard · {title}</b> · {self.requests:,} requests, seed {self.seed}")
        self.widget = widgets.VBox([header, widgets.VBox(list(self.controls.values())), self.status,
                                    self.chart, self.numbers])
        self.update()

    @classmethod
    def playground(cls, **options) -> Dashboard:
        """The all-knobs dashboard on `PLAYGROUND` (cache, budget, cascade, traffic rate)."""
        return cls(PLAYGROUND, **options)

    # -- state -------------------------------------------------------------------

    @property
    def result(self):
        """The last successful run's `Result` (None before the first)."""
        return self._state.result

    @property
    def summary(self) -> dict | None:
        return None if self._state.result is None else self._state.result.summary()

    @property
    def error(self) -> str | None:
        """The last run's error message, or None when it succeeded."""
        return self._state.error

    @property
    def runs(self) -> int:
        return self._state.runs

    @property
    def history(self) -> list[Run]:
        return list(self._state.history)

    @property
    def pending(self) -> bool:
        return self._debouncer.pending

    def settings(self) -> dict:
        """path -> value the controls set now."""
        return {k.path: k.coerce(self.controls[k.label].value) for k in self.knobs}

    def scenario(self):
        """The scenario the controls describe (validated; raises ScenarioError on a bad combination)."""
        return build(apply_point(self.base, self.settings()), self.path)

    # -- running -----------------------------------------------------------------

    def _changed(self, change) -> None:
        if self._quiet:
            return
        self.status.value = "<i>re-running…</i>"
        self._debouncer.trigger()

    def flush(self) -> bool:
        """Run a scheduled re-run now (True), or nothing when none is pending (False)."""
        return self._debouncer.flush()

    def set(self, **values):
        """Set controls by keyword-friendly label (`cache_capacity=500`) and re-run once, now; returns the Result."""
        by_key = {_key(label): label for label in self.controls}
        unknown = [key for key in values if key not in by_key]
        if unknown:
            raise CostlabError(f"set: no control {unknown[0]!r}; this dashboard has {', '.join(sorted(by_key))}")
        self._quiet = True
        try:
            for key, value in values.items():
                self.controls[by_key[key]].value = value
        finally:
            self._quiet = False
        self._debouncer.cancel()
        return self.update()

    def update(self):
        """Simulate the current settings now and redraw; errors are shown, never raised."""
        with self._lock:
            settings = self.settings()
            try:
                result = runs.run(self.scenario(), self.seed, self.requests)
                m = runs.metrics(result)
            except CostlabError as exc:
                return self._show_error(str(exc))
            except Exception as exc:      # a bug must not vanish into an event loop's log
                return self._show_error(f"unexpected {type(exc).__name__}: {exc}")
            state = self._state
            state.result, state.error, state.runs = result, None, state.runs + 1
            state.history.append(Run(settings, **{k: m[k] for k in RUN_METRICS}))
            self.chart.value = _png(self._figure())
            self.numbers.value = self._numbers_html()
            self.status.value = (f"<span style='color:{plots.SAVED}'>run {state.runs}: {m['requests']:,} requests "
                                 f"simulated</span>")
            return result

    def _show_error(self, message: str):
        self._state.error = message
        self.status.value = (f"<div style='color:{plots.WORSE};border-left:4px solid {plots.WORSE};padding:2px 8px'>"
                             f"<b>this setting cannot run:</b> {fmt.html_text(message)}<br>"
                             f"<small>the charts below still show the last run that worked</small></div>")
        return None

    # -- drawing -----------------------------------------------------------------

    def _figure(self) -> Figure:
        r, m = self._state.result, runs.metrics(self._state.result)
        fig = Figure(figsize=(10, 6.2), layout="constrained")
        (ax_cost, ax_lat), (ax_q, ax_hist) = fig.subplots(2, 2)
        base_cost, cost = m["baseline_cost_usd"], m["cost_usd"]
        ax_cost.bar([0, 1], [base_cost, cost], color=[plots.BASELINE, plots.OPTIMIZED], width=0.6)
        ax_cost.set_xticks([0, 1], ["without\noptimization", "optimized"])
        ax_cost.set_title(f"Cost: {fmt.pct(m['reduction_pct'])} less", fontsize=10)
        ax_cost.set_ylabel("USD")
        for x, v in ((0, base_cost), (1, cost)):
            ax_cost.text(x, v, fmt.usd(v), ha="center", va="bottom", fontsize=8)
        ax_cost.set_ylim(0, max(base_cost, cost) * 1.2 or 1)

        plots.latency_cdf(r, ax=ax_lat)
        ax_lat.set_title(f"Latency: p95 {fmt.ms(m['p95_ms'])}", fontsize=10)

        served = (r.baseline.outcome != ERROR) & (r.baseline.outcome != REJECTED)
        q_base = float(r.baseline.quality[served].mean()) if served.any() else 0.0
        ax_q.bar([0, 1], [q_base, m["quality_mean"]], color=[plots.BASELINE, plots.OPTIMIZED], width=0.6)
        ax_q.set_xticks([0, 1], ["without\noptimization", "optimized"])
        if self.quality_floor is not None:
            ax_q.axhline(self.quality_floor, color=plots.WORSE, ls="--", lw=1, label="quality floor")
            ax_q.legend(fontsize=7)
        lo = min(q_base, m["quality_mean"], self.quality_floor or 1.0)
        ax_q.set_ylim(max(0.0, lo - 0.1), 1.02)
        for x, v in ((0, q_base), (1, m["quality_mean"])):
            ax_q.text(x, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax_q.set_title(f"Quality (errors: {fmt.share(m['error_rate'])})", fontsize=10)

        hist = self._state.history
        xs = [h.cost_usd for h in hist]
        ys = [h.p95_ms for h in hist]
        ax_hist.plot(xs, ys, color=plots.BASELINE, lw=0.8, marker="o", ms=4, alpha=0.7)
        ax_hist.scatter(xs[-1:], ys[-1:], color=plots.ORANGE, s=60, zorder=3, label="this run")
        sla_ms = r.scenario.sla.p95_ms    # the chart is of p95: a p99 target is not drawn on it
        if sla_ms:
            ax_hist.axhline(sla_ms, color=plots.WORSE, ls="--", lw=1)
        ax_hist.set_xlabel(runs.LABELS["cost_usd"])
        ax_hist.set_ylabel(runs.LABELS["p95_ms"])
        ax_hist.set_title(f"Your {len(hist)} run(s): cost against p95", fontsize=10)
        ax_hist.legend(fontsize=7)
        ax_hist.grid(alpha=0.3)
        return fig

    def _numbers_html(self) -> str:
        s = self.summary
        base = s["baseline"]
        rows = [("cost (USD)", f"{s['baseline_cost_usd']:,.4f}", f"{s['cost_usd']:,.4f}"),   # runs cents apart
                ("p95 latency", fmt.ms(base["latency_ms"]["p95"]), fmt.ms(s["latency_ms"]["p95"])),
                ("errors", fmt.share(base["error_rate"], 2), fmt.share(s["error_rate"], 2)),
                ("cache hit rate", fmt.share(0.0), fmt.share(s["cache_hit_rate"])),
                ("mean quality", "", f"{s['quality_mean']:.3f}")]
        body = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
        knobs = "; ".join(f"{fmt.html_text(k.label)} = {fmt.html_text(_shown(self.controls[k.label].value, k))}"
                          for k in self.knobs)
        return (f"<table><tr><th></th><th>baseline</th><th>optimized</th></tr>{body}</table>"
                f"<small>{knobs}</small>")

    # -- display -----------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display  # jupyter: only a notebook front end displays a dashboard

        display(self.widget)

    def __repr__(self) -> str:
        s = self.summary
        shown = f"cost {fmt.usd(s['cost_usd'])}, p95 {fmt.ms(s['latency_ms']['p95'])}" if s else "no run yet"
        return f"<Dashboard {self.base.get('name', '')!r}: {len(self.knobs)} knobs; {shown}>"


def _shown(value, knob: Knob) -> str:
    """A control's value as the dashboard lists it."""
    v = knob.coerce(value)
    return fmt.number(v) if isinstance(v, float) else str(v)


def _key(label: str) -> str:
    """"cache TTL (s)" -> "cache_ttl": a label as a keyword argument."""
    return label.split(" (")[0].replace(" ", "_").lower()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return buf.getvalue()


__all__ = ["DEFAULT_KNOBS", "KNOBS", "PLAYGROUND", "Dashboard", "Debouncer", "Knob", "Run", "default_scheduler"]
