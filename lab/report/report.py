"""The cost report: an executive summary, charts, tables and a JSON of every number.

`build_report` takes a scenario (simulated on one or several seeds), a `Result`, a ledger
DataFrame or a ledger file, and assembles what a finance or engineering lead asks: what it
cost, what optimization saved and how sure we are (95 % CI across seeds), which strategy
saved it, who spent it, whether service held up, what alerted, what looked anomalous and
what comes next. `Report.write(DIR)` writes `report.html` (self-contained: the PNG charts
are embedded, and also written next to it), `report.json` and the PNGs, atomically: DIR
is replaced in one rename, so a reader never sees half a report.

    report = build_report("scenarios/support-chatbot.toml", seeds=3, budget_usd=10)
    report                      # renders in a notebook
    report.write("out/report")  # what `costlab report` does
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from lab import fmt
from lab.analysis.alerts import evaluate_alerts
from lab.analysis.anomalies import detect_cost_anomalies, measure_detector
from lab.analysis.attribution import NO_STAGE, attribute, savings_by_strategy, strategy_of
from lab.analysis.baselines import Comparison, SeedRuns, baseline_ledger, run_metrics, run_seeds
from lab.analysis.forecast import forecast_cost
from lab.analysis.frame import as_ledger, horizon_s, nice_bucket_s, read_ledger
from lab.analysis.kpi import kpi_table, standard_kpis
from lab.errors import ConfigError, CostlabError
from lab.loader import load_scenario
from lab.pricing import PRICE_DATE
from lab.result import Result
from lab.runs import run
from lab.scenario import Scenario

GENERATOR = "costlab report"
MONTH_S = 30 * 86400.0
DETECTOR_SERIES = 20     # synthetic series the detector's precision/recall is measured on (the README's figures)
NO_CALL = "no provider call"


# --------------------------------------------------------------------------- what the report holds


class Bold(str):
    """A stretch of a summary sentence to stress: bold in the HTML, plain text in the JSON and the terminal."""


@dataclass(frozen=True)
class Sentence:
    """One line of the executive summary, as text pieces (some `Bold`)."""

    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _say(*parts: str) -> Sentence:
    return Sentence(parts)


@dataclass(frozen=True)
class Badge:
    """A status cell (ok, warning, critical, info, no data) drawn as a coloured pill."""

    text: str

    @property
    def css(self) -> str:
        return self.text.replace(" ", "-")


@dataclass(frozen=True)
class Code:
    """A cell shown as code (a KPI formula)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table block: header texts and rows of cells (text, `Badge` or `Code`)."""

    head: list[str]
    rows: list[list]
    kind: str = "table"


@dataclass(frozen=True)
class Text:
    """A paragraph block; `kind` "note" (small print under a table) or "heading" (a sub-heading)."""

    text: str
    kind: str = "text"


def _note(text: str) -> Text:
    return Text(text, "note")


@dataclass(frozen=True)
class Section:
    heading: str
    blocks: list


@dataclass
class Chart:
    """One chart of the report: its file name, figure and the caption that says what to read."""

    file: str
    figure: object
    caption: str
    _png: bytes | None = field(default=None, repr=False)

    def png(self) -> bytes:
        """The chart as PNG bytes (rendered once)."""
        if self._png is None:
            buf = io.BytesIO()
            self.figure.savefig(buf, format="png", dpi=110)
            self._png = buf.getvalue()
        return self._png

    def png_base64(self) -> str:
        return base64.b64encode(self.png()).decode()


def _finalize(value):
    """Every value a template prints goes through lab.fmt.html_text (escaped, `$` as an entity)."""
    return value if isinstance(value, Markup) else Markup(fmt.html_text(value))


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("lab.report", "templates"), autoescape=True,
                                finalize=_finalize, undefined=jinja2.StrictUndefined,
                                trim_blocks=True, lstrip_blocks=True)
_TEMPLATES.tests.update(bold=lambda x: isinstance(x, Bold), badge=lambda x: isinstance(x, Badge),
                        code=lambda x: isinstance(x, Code))


@dataclass
class Report:
    """Everything the report shows; `html()` renders it, `write(dir)` saves it atomically."""

    title: str
    subtitle: str
    summary: list[Sentence]
    numbers: dict
    charts: list[Chart]
    sections: list[Section] = field(default_factory=list)

    def html(self) -> str:
        """The report as one self-contained HTML page (charts embedded as PNG data)."""
        return _TEMPLATES.get_template("report.html.j2").render(report=self, generator=GENERATOR)

    def _repr_html_(self) -> str:
        return _TEMPLATES.get_template("summary.html.j2").render(report=self)

    def write(self, out_dir) -> Path:
        """Write report.html, report.json and the chart PNGs to `out_dir`, replacing it atomically.

        An existing `out_dir` must be empty or an earlier costlab report: anything else is
        refused rather than overwritten.
        """
        out = Path(out_dir)
        _check_target(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)      # mkdtemp makes it private; a report is meant to be shared
        old = None
        try:
            for chart in self.charts:
                (tmp / chart.file).write_bytes(chart.png())
            (tmp / "report.json").write_text(json.dumps(_jsonable(self.numbers), indent=1, allow_nan=False) + "\n")
            (tmp / "report.html").write_text(self.html(), encoding="utf-8")
            if out.exists():
                old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(out, old)
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and not out.exists():
                os.rename(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out


@functools.lru_cache(maxsize=1)
def detector_quality() -> dict:
    """Precision and recall of both detectors on seeded synthetic spikes (deterministic, so cached)."""
    return {m: measure_detector(m, n_series=DETECTOR_SERIES).as_dict() for m in ("zscore", "iqr")}


def check_output_dir(out) -> None:
    """Refuse an --out that exists and is neither empty nor an earlier costlab report."""
    _check_target(Path(out))


def _check_target(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    marker = out / "report.json"
    try:
        is_report = json.loads(marker.read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        is_report = False
    if not is_report:
        raise ConfigError(f"--out {out}: the directory exists and is not a costlab report; "
                          "give a new or empty directory (it will be replaced as a whole)")


def _jsonable(obj):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (int, str)):
        return obj
    return str(obj)


def _records(frame: pd.DataFrame) -> list[dict]:
    return _jsonable(frame.reset_index().to_dict(orient="records"))


# --------------------------------------------------------------------------- inputs


@dataclass
class _Source:
    ledger: pd.DataFrame
    result: Result | None = None   # the first seed's Result, when simulated
    seed_runs: SeedRuns | None = None
    scenario: Scenario | None = None
    kind: str = "ledger"
    path: str = ""


def _resolve(source, seed: int, seeds: int, requests: int | None, progress) -> _Source:
    if isinstance(source, pd.DataFrame):
        return _Source(as_ledger(source))
    if isinstance(source, Result):
        return _Source(source.ledger, source, None, source.scenario, "result")
    if isinstance(source, Scenario):
        scenario, path = source, source.path
    else:
        path = str(source)
        suffix = Path(path).suffix.lower()
        if suffix in (".csv", ".parquet"):
            return _Source(read_ledger(path), kind="ledger file", path=path)
        if suffix != ".toml":
            raise ConfigError(f"{path}: expected a scenario .toml or a ledger .csv/.parquet "
                              "(from `costlab run --ledger`)")
        scenario = load_scenario(path)
    if seeds < 1:
        raise ConfigError(f"--seeds: expected at least 1, got {seeds}")
    first: list = []
    runs = run_seeds(scenario, range(seed, seed + seeds), requests, progress=progress, keep_first=first)
    return _Source(first[0].ledger, first[0], runs if seeds > 1 else None, scenario, "scenario", path)


# --------------------------------------------------------------------------- build


def build_report(source, *, seed: int = 0, seeds: int = 3, requests: int | None = None,
                 sla_ms: float | None = None, budget_usd: float | None = None, budget_period_s: float = 86400.0,
                 teams: dict[str, str] | None = None, bucket_s: float | None = None, frontier: bool = True,
                 kpis: list | None = None, progress: bool | None = None, recommendation=None) -> Report:
    """Simulate (for a scenario) and analyse; returns a Report ready to show or write.

    `seeds` > 1 runs seeds `seed .. seed+seeds-1` for confidence intervals; the charts and
    tables show the first. `budget_usd` (per `budget_period_s`) enables budget alerts;
    `teams` maps tenants to teams for a by-team table. A ledger file has no SLA of its own:
    give `sla_ms` for latency alerts and KPIs. `recommendation` (a ranked `ResultTable`, e.g.
    `lab.twin.recommend(lab.twin.what_if(...))`, which sits above the report) becomes its
    Recommendations section. `kpis` (lab.analysis.kpi.KPI objects, e.g. from
    `load_kpis`) are added to the standard ones, each with a chart of its values over time.
    """
    custom = list(kpis or [])
    names = [k.name for k in custom]
    if len(set(names)) < len(names):           # before any simulation
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"kpis: each KPI needs its own name; {', '.join(map(repr, twice))} given twice")
    src = _resolve(source, seed, seeds, requests, progress)
    led = src.ledger
    if not len(led):
        raise ConfigError("the ledger is empty: nothing to report")
    if sla_ms is None and src.scenario is not None:
        sla_ms = src.scenario.sla.limit_ms or None
    bucket_s = bucket_s or nice_bucket_s(horizon_s(led))
    b = _Builder(src, sla_ms, bucket_s, teams, budget_usd, budget_period_s)
    b.custom_kpis = custom
    b.overview()
    b.strategies()
    b.attribution()
    b.kpis()
    b.seeds()
    b.alerts()
    b.anomalies_and_forecast()
    b.frontier(frontier, progress)
    b.recommendations(recommendation)
    b.charts()
    return b.report()


class _Builder:
    """Collects numbers, sentences, tables and charts section by section."""

    def __init__(self, src: _Source, sla_ms, bucket_s, teams, budget_usd, budget_period_s):
        self.src, self.led, self.sla_ms, self.bucket_s = src, src.ledger, sla_ms, bucket_s
        self.teams, self.budget_usd, self.budget_period_s = teams, budget_usd, budget_period_s
        self.n: dict = {"generator": GENERATOR, "version": 1}
        self.summary: list[Sentence] = []
        self.sections: list[Section] = []
        self.chart_list: list[Chart] = []
        self.base_led = baseline_ledger(src.result) if src.result is not None else None

    def say(self, *parts: str) -> None:
        self.summary.append(_say(*parts))

    # -- overview ------------------------------------------------------------------------
    def overview(self) -> None:
        led, src = self.led, self.src
        span_s = horizon_s(led)
        cost, base = float(led["cost_usd"].sum()), float(led["baseline_cost_usd"].sum())
        saved = base - cost
        pct = 100.0 * saved / base if base else 0.0
        run_m = run_metrics(led, self.sla_ms)
        self.run_m = run_m
        self.base_m = run_metrics(self.base_led, self.sla_ms) if self.base_led is not None else None
        name = src.scenario.name if src.scenario is not None else Path(src.path).stem or "ledger"
        self.title = f"Cost report: {name}"
        seeds = src.seed_runs.seeds if src.seed_runs else ([src.result.seed] if src.result is not None else [])
        origin = {"scenario": f"simulated from {src.path or name}", "result": "a simulation result",
                  "ledger file": f"the ledger {src.path}", "ledger": "a ledger"}[src.kind]
        desc = src.scenario.description + " · " if src.scenario is not None and src.scenario.description else ""
        self.subtitle = (f"{desc}{len(led):,} requests over {_duration(span_s)} of traffic, {origin}"
                         + (f", seed{'s' if len(seeds) > 1 else ''} {_seed_text(seeds)}" if seeds else "")
                         + f" · prices from genai-prices as of {PRICE_DATE:%Y-%m-%d}"
                         + f" · generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        per_month = cost / max(span_s, 1e-9) * MONTH_S
        base_month = base / max(span_s, 1e-9) * MONTH_S
        self.n["source"] = {"kind": src.kind, "path": src.path, "scenario": name, "seeds": seeds,
                            "requests": len(led), "simulated_s": span_s, "sla_ms": self.sla_ms,
                            "bucket_s": self.bucket_s}
        self.n["overview"] = {"baseline_cost_usd": base, "cost_usd": cost, "saved_usd": saved, "reduction_pct": pct,
                              "requests": len(led), "provider_calls": run_m["provider_calls"],
                              "cost_per_1k_requests_usd": run_m["cost_per_1k_requests_usd"]}
        self.n["run_rate"] = {"per_month_usd": per_month, "baseline_per_month_usd": base_month,
                              "saved_per_month_usd": base_month - per_month,
                              "assumption": "traffic continues at the rate of this run, 30-day month"}
        verb = "cut" if saved >= 0 else "raised"
        ci = ""
        runs = src.seed_runs
        self.fixed_traffic = False
        if runs is not None:
            head = runs.comparison().headline()
            lo, hi = head["reduction_pct_ci"]
            m, mlo, mhi = runs.monthly_cost_usd()
            bm, _, _ = runs.monthly_cost_usd(baseline=True)
            self.n["run_rate"].update({"per_month_usd_mean": m, "per_month_usd_ci": [mlo, mhi],
                                       "baseline_per_month_usd_mean": bm})
            self.fixed_traffic = len({round(b["cost_usd"], 9) for b in runs.baseline_samples}) == 1
            if self.fixed_traffic:   # a trace replay: every seed sends the same requests
                ci = f" (the same on all {len(runs.seeds)} seeds: the traffic is a fixed trace)"
            else:
                sig = ("the reduction is statistically significant" if head["significant"] else
                       "the difference is not statistically significant")
                ci = (f" (mean over {len(runs.seeds)} seeds {fmt.pct(_nz(head['reduction_pct']))}, 95 % CI "
                      f"{_nz(lo):.1f}–{fmt.pct(_nz(hi))}; {sig}, paired t-test p = {head['p_value']:.2g})")
        self.has_stages = any(c.startswith("stage_") for c in led.columns)
        over = f" for {len(led):,} requests over {_duration(span_s)}"
        if self.has_stages:
            self.say("Optimization ", Bold(f"{verb} the bill by {fmt.pct(abs(pct))}"),
                     f": {fmt.usd(cost)} instead of {fmt.usd(base)}{over}{ci}.")
        else:
            self.say("No optimization ran: the bill is ", Bold(fmt.usd(cost)), f"{over}.")
        month_ci = ""
        if "per_month_usd_ci" in self.n["run_rate"] and not self.fixed_traffic:
            lo, hi = self.n["run_rate"]["per_month_usd_ci"]
            month_ci = f" (95 % CI {fmt.usd(lo)}–{fmt.usd(hi)} across seeds)"
        rate = f"run rate of this {_duration(span_s)}, 30-day month"
        if self.has_stages:
            self.say("At this traffic that is about ", Bold(f"{fmt.usd(per_month)} a month"),
                     f"{month_ci} instead of {fmt.usd(base_month)}: {fmt.usd(abs(base_month - per_month))} a month "
                     f"{'saved' if saved >= 0 else 'extra'} ({rate}).")
        else:
            self.say("At this traffic that is about ", Bold(f"{fmt.usd(per_month)} a month"), f"{month_ci} ({rate}).")
        if self.budget_usd:
            self._budget_sentence(cost, span_s)
        self._service_sentences(run_m)

    def _budget_sentence(self, cost: float, span_s: float) -> None:
        per_period = cost / max(span_s, 1e-9) * self.budget_period_s
        share = 100.0 * per_period / self.budget_usd
        period = {86400.0: "day", 7 * 86400.0: "week", 30 * 86400.0: "month"}.get(
            float(self.budget_period_s), _duration(self.budget_period_s))
        head = (f"Budget: at this rate {fmt.usd(per_period)} per {period} against "
                f"{fmt.usd(self.budget_usd)} ({share:,.0f} %): ")
        if per_period > self.budget_usd:
            runs_out = self.budget_usd / (cost / max(span_s, 1e-9))
            self.say(head, Bold("over budget"), f", it would run out after {_duration(runs_out)}.")
        else:
            self.say(head, "within budget.")
        self.n["budget"] = {"budget_usd": self.budget_usd, "period_s": self.budget_period_s,
                            "spend_per_period_usd": per_period, "share_pct": share}

    def _service_sentences(self, run_m: dict) -> None:
        base = self.base_m
        lat = (f"p95 latency {fmt.ms(run_m['latency_p95_ms'])}"
               + (f" ({fmt.ms(base['latency_p95_ms'])} without optimization)" if base else ""))
        if self.sla_ms:
            met = run_m["latency_p95_ms"] <= self.sla_ms
            bviol = f", {fmt.share(base['sla_violation_rate'])} without optimization" if base else ""
            self.say(f"Service: {lat} against the {fmt.ms(self.sla_ms)} target — ", Bold("met" if met else "missed"),
                     f"; {fmt.share(run_m['sla_violation_rate'])} of requests were slower or failed{bviol}.")
        else:
            self.say(f"Service: {lat} (no SLA given).")
        q = run_m["quality_mean"]
        if np.isfinite(q) and q < 0.9995:
            self.say("Answer quality ", Bold(f"fell to {q:.3f}"), " (1 = every answer right, as without "
                     "optimization): weigh the saving against wrong or stale answers.")
        elif np.isfinite(q):
            self.say("Answer quality is unchanged (every answer as good as without optimization).")
        self.n["service"] = {"run": run_m, "baseline": base}

    # -- savings by strategy ---------------------------------------------------------------
    def strategies(self) -> None:
        table = savings_by_strategy(self.led)
        table = table[table.index != NO_STAGE]
        self.strategy_table = table
        self.n["savings_by_strategy"] = _records(table)
        total = float(self.led["baseline_cost_usd"].sum() - self.led["cost_usd"].sum())
        if len(table) and total > 0:
            order = table.sort_values("saved_usd", ascending=False)
            parts = [f"{k} {fmt.usd(r.saved_usd)} ({r.share_pct:.0f} %)" for k, r in order.iterrows()]
            rest = ", then " + ", ".join(parts[1:]) if len(parts) > 1 else ""
            self.say("Where the saving comes from: ", Bold(parts[0]), f"{rest}.")
            for k, r in order[order["saved_usd"] < 0].iterrows():
                self.say(f"{k} ", Bold(f"costs {fmt.usd(-r.saved_usd)} more"), " than it saves in this run: review it.")
        blocks = [_table(table, {"saved_usd": fmt.usd, "requests": fmt.count, "share_pct": fmt.pct},
                         {"saved_usd": "saved", "requests": "requests", "share_pct": "share of saving"})]
        runs = self.src.seed_runs
        if runs is not None:
            st = runs.strategy_table()
            blocks += [Text("Across seeds (mean and 95 % CI):"),
                       _table(st, {"saved_usd": fmt.usd, "ci_low": fmt.usd, "ci_high": fmt.usd},
                              {"saved_usd": "mean saved", "ci_low": "CI low", "ci_high": "CI high"})]
            self.n["savings_by_strategy_across_seeds"] = _records(st)
        blocks.append(_note("Each request's saving (its cost without optimization minus its cost) is credited to "
                            "the stage that answered or changed it; the rows add up to the total saving."))
        self.sections.append(Section("Savings by strategy", blocks))

    # -- attribution -----------------------------------------------------------------------
    def attribution(self) -> None:
        led = self.led
        keys = [k for k in ("tenant", "feature", "model", "provider") if k in led and led[k].nunique() > 1]
        if self.teams:
            keys.insert(1, "team")
        keys = keys or ["model"]
        self.attribution_keys = keys
        blocks: list = []
        self.n["attribution"] = {}
        fmts = {"requests": fmt.count, "provider_calls": fmt.count, "cost_usd": fmt.usd, "baseline_cost_usd": fmt.usd,
                "saved_usd": fmt.usd, "reduction_pct": fmt.pct, "cost_share_pct": fmt.pct}
        heads = {"requests": "requests", "provider_calls": "provider calls", "cost_usd": "cost",
                 "baseline_cost_usd": "without optimization", "saved_usd": "saved", "reduction_pct": "reduction",
                 "cost_share_pct": "share of cost"}
        for k in keys:
            table = attribute(led, k, teams=self.teams)
            self.n["attribution"][k] = _records(table)
            shown = table.rename(index={"none": NO_CALL}) if k in ("model", "provider") else table
            blocks += [Text(f"By {k}", "heading"), _table(shown[list(fmts)], fmts, heads)]
        top_key = "team" if self.teams else "tenant"
        if top_key in self.n["attribution"] and len(self.n["attribution"][top_key]) > 1:
            top = self.n["attribution"][top_key][0]
            self.say(f"Spend by {top_key}: ", Bold(str(top[top_key])), f" accounts for "
                     f"{top['cost_share_pct']:.0f} % of the cost ({fmt.usd(top['cost_usd'])}).")
        blocks.append(_note(f"“{NO_CALL}”: requests answered without a provider call (cache hits, deduplicated "
                            "followers); the ledger calls them “none”."))
        self.sections.append(Section("Who spent it", blocks))

    # -- KPIs ---------------------------------------------------------------------------------
    def kpis(self) -> None:
        kpis = standard_kpis(self.sla_ms)
        has_cache = any(c.removeprefix("stage_").split("_")[0] in ("cache", "semantic")
                        for c in self.led.columns if c.startswith("stage_"))
        skip = set() if has_cache else {"cache hit rate"}
        if not self.has_stages:
            skip.add("share of bill saved")
        skip |= {k.name for k in self.custom_kpis}      # a KPI of your own replaces the standard one of its name
        table = kpi_table([k for k in kpis if k.name not in skip] + self.custom_kpis, self.led)
        self.n["kpis"] = _records(table)
        rows = [[k, _unit_value(r.value, r.unit, missing="no data"), Badge(r.status), _unit_value(r.warning, r.unit),
                 _unit_value(r.critical, r.unit), Code(r.formula)] for k, r in table.iterrows()]
        self.sections.append(Section("Key indicators", [
            Table(["KPI", "value", "status", "warning", "critical", "formula"], rows),
            _note("Formulas are costlab KPI formulas over the ledger (lab.analysis.kpi).")]))
        bad = table[table["status"].isin(["warning", "critical"])]
        if len(bad):
            items = ", ".join(f"{k} {_unit_value(r.value, r.unit)} ({r.status})" for k, r in bad.iterrows())
            self.say(f"Indicators to watch: {items}.")

    # -- seeds --------------------------------------------------------------------------------
    def seeds(self) -> None:
        runs = self.src.seed_runs
        if runs is None:
            if self.base_m is not None:
                comp = Comparison([self.base_m], [self.run_m], "no optimization", "optimized")
                self._comparison_section(comp, "One seed: no confidence intervals (run with --seeds 3 or more).")
            return
        comp = runs.comparison()
        self.n["seeds"] = {"seeds": runs.seeds, "headline": comp.headline(), "table": _records(comp.table()),
                           "fixed_traffic": self.fixed_traffic}
        if self.fixed_traffic:
            one = Comparison(runs.baseline_samples[:1], runs.run_samples[:1], "no optimization", "optimized")
            self._comparison_section(one, f"Every one of the {len(runs.seeds)} seeds gave the same numbers: the "
                                          "traffic is a fixed trace, so there is no sampling noise to test.")
            return
        self._comparison_section(comp, f"{len(runs.seeds)} seeds, the same traffic for both sides of each seed "
                                       "(paired t-test, 95 % CI of the mean change).")

    def _comparison_section(self, comp, note: str) -> None:
        t = comp.table()
        mean = f" (mean of {len(comp.candidate)} seeds)" if len(comp.candidate) > 1 else ""
        self.n.setdefault("comparison", _records(t))
        rows = []
        for _key, r in t.iterrows():
            ci = ("" if not np.isfinite(r.change_pct_ci_low)
                  else f"{r.change_pct_ci_low:+.1f} … {r.change_pct_ci_high:+.1f} %")
            sig = {True: "yes", False: "no", None: "–"}[r.significant]
            rows.append([r.label, _unit_value(r.baseline, r.unit, share_decimals=2),
                         _unit_value(r.candidate, r.unit, share_decimals=2), _signed_pct(r.change_pct), ci, sig])
        head = ["metric", f"without optimization{mean}", f"optimized{mean}", "change", "95 % CI", "significant"]
        self.sections.append(Section("Optimized against no optimization", [Table(head, rows), _note(note)]))

    # -- alerts -------------------------------------------------------------------------------
    def alerts(self) -> None:
        data = self.src.result if self.src.result is not None else self.led
        alerts = evaluate_alerts(data, sla_ms=self.sla_ms, budget_usd=self.budget_usd,
                                 budget_period_s=self.budget_period_s)
        self.alert_table = alerts
        self.n["alerts"] = {"rules": {"budget_usd": self.budget_usd, "budget_period_s": self.budget_period_s,
                                      "sla_ms": self.sla_ms}, "fired": _jsonable(alerts.to_dict(orient="records"))}
        if len(alerts):
            rank = {"critical": 0, "warning": 1, "info": 2}
            parts = []
            for rule, group in sorted(alerts.groupby("rule", sort=False),
                                      key=lambda g: (rank.get(g[1]["severity"].iloc[0], 3), g[1]["fired_at_s"].min())):
                times = f"{len(group)} times, first" if len(group) > 1 else "at"
                still = " and still active at the end" if group["cleared_at_s"].isna().any() else ""
                what = _ALERT_MEANING.get(rule, "")
                parts.append(f"{rule}{what} ({group['severity'].iloc[0]}, {times} "
                             f"{_clock(group['fired_at_s'].min())}{still})")
            self.say(Bold(f"{len(alerts)} alert{'s' if len(alerts) > 1 else ''}"), f" fired: {'; '.join(parts)}.")
        else:
            self.say("No alerts fired" + ("" if self.budget_usd else " (no budget given: budget alerts off)") + ".")
        rows = [[r.rule, Badge(r.severity), _clock(r.fired_at_s),
                 _clock(r.cleared_at_s) if np.isfinite(r.cleared_at_s) else "still active", r.message]
                for r in alerts.itertuples()]
        rules = (f"budget {fmt.usd(self.budget_usd)} per {_duration(self.budget_period_s)} at 50/80/100 %"
                 if self.budget_usd else "no budget given")
        table = Table(["rule", "severity", "fired", "cleared", "detail"], rows) if rows else Text("None fired.")
        self.sections.append(Section("Alerts", [table, _note(
            f"Rules: {rules}; SLA violations above 1 % over 5 min; cache hit rate below 50 % over 5 min (pipelines "
            "with a cache); circuit breaker open. Times are simulated time from the start (h:mm:ss).")]))

    # -- anomalies and forecast -------------------------------------------------------------------
    def anomalies_and_forecast(self) -> None:
        led, bucket_s = self.led, self.bucket_s
        found = {m: detect_cost_anomalies(led, bucket_s, m) for m in ("zscore", "iqr")}
        self.anomalies = found["zscore"]      # the primary detector (the better measured); IQR confirms
        quality = detector_quality()
        flagged = self.anomalies[self.anomalies["anomaly"]]
        self.n["anomalies"] = {
            "bucket_s": bucket_s, "methods": ["rolling z-score (4 sd)", "rolling IQR (Q3 + 3 IQR)"],
            "found": [{"t_start_s": float(t), "cost_usd": float(r.value), "expected_usd": float(r.expected),
                       "zscore": bool(found["zscore"].loc[t, "anomaly"]), "iqr": bool(found["iqr"].loc[t, "anomaly"])}
                      for t, r in flagged.iterrows()],
            "detector_quality_on_synthetic_spikes": quality}
        q = quality["zscore"]
        qtext = (f"on {q['series']} synthetic series the z-score detector found {q['true_positives']} of "
                 f"{q['spikes']} injected spikes with {q['false_positives']} false alarms: precision "
                 f"{q['precision']:.2f}, recall {q['recall']:.3g}")
        if len(flagged):
            when = ", ".join(_clock(t) for t in flagged.index[:5]) + (", …" if len(flagged) > 5 else "")
            agree = int(found["iqr"].loc[flagged.index, "anomaly"].sum())
            self.say(Bold(f"{len(flagged)} cost anomal{'ies' if len(flagged) > 1 else 'y'}"),
                     f" per {_bucket(bucket_s)} bucket, at {when}; the IQR detector agrees on {agree} ({qtext}).")
        else:
            self.say(f"No cost anomalies per {_bucket(bucket_s)} bucket ({qtext}).")
        period_s = None
        if self.src.scenario is not None and self.src.scenario.traffic.arrivals.process == "diurnal":
            period_s = self.src.scenario.traffic.arrivals.period_s
        try:
            self.forecast = forecast_cost(led, bucket_s, period_s=period_s)
        except CostlabError as exc:
            self.forecast = None
            self.n["forecast"] = {"error": str(exc)}
            return
        fc = self.forecast
        mean, lo, hi = fc.total()
        horizon = len(fc.mean) * bucket_s
        self.n["forecast"] = {"method": fc.method, "params": fc.params, "horizon_s": horizon, "level": fc.level,
                              "total_usd": mean, "total_interval_usd": [lo, hi],
                              "buckets": _jsonable(fc.to_frame().to_dict(orient="records"))}
        self.say(f"Forecast for the next {_duration(horizon)}: ", Bold(fmt.usd(mean)),
                 f" (95 % interval {fmt.usd(lo)}–{fmt.usd(hi)}, {fc.method}).")
        rows = [[_clock(f["t_start_s"]), fmt.usd(f["cost_usd"]), fmt.usd(f["expected_usd"]),
                 " ".join(m for m, on in (("z", f["zscore"]), ("iqr", f["iqr"])) if on)]
                for f in self.n["anomalies"]["found"]]
        iq = quality["iqr"]
        table = (Table(["bucket start", "cost", "expected", "found by"], rows) if rows
                 else Text("No anomalous cost buckets."))
        self.sections.append(Section("Anomalies and forecast", [table, _note(
            f"Each {_bucket(bucket_s)} bucket is judged against a line through the buckets before it: rolling "
            "z-score (over 4 sd; listed) and rolling IQR (over Q3 + 3 IQR; shown when it agrees). Measured on "
            f"{DETECTOR_SERIES} synthetic week-long series with 10 injected spikes each (5–10 noise sd): z-score "
            f"precision {q['precision']:.2f}, recall {q['recall']:.3g}; IQR precision "
            f"{iq['precision']:.2f}, recall {iq['recall']:.3g}. Forecast: {fc.method} fitted to the "
            "cost per bucket, 95 % prediction interval.")]))

    # -- recommendations --------------------------------------------------------------------------
    def recommendations(self, ranked) -> None:
        """The ranked pipelines (cheapest meeting the SLA and quality floor first) and the sentences that say why."""
        if ranked is None:
            return
        self.n["recommendations"] = {"title": ranked.title, "ranked": _records(ranked.table), "notes": list(ranked.notes)}
        if ranked.notes:
            self.say(Bold(ranked.notes[0]))
        blocks = [Table([str(c) for c in ranked.table.columns], ranked.cells())]
        blocks += [_note(n) for n in ranked.notes]
        self.sections.append(Section(f"Recommendations · {ranked.title.split(' · ', 1)[-1]}", blocks))

    # -- cost-quality frontier ---------------------------------------------------------------------
    def frontier(self, enabled: bool, progress) -> None:
        led = self.led
        result = self.src.result
        base_cost = float(led["baseline_cost_usd"].sum())
        if result is not None:
            points = [{"label": "no optimization", "cost_usd": base_cost, "quality": float(np.mean(result.baseline.quality)),
                       "latency_p95_ms": self.base_m["latency_p95_ms"]}]
        else:
            points = [{"label": "no optimization", "cost_usd": base_cost, "quality": 1.0, "latency_p95_ms": None}]
        stages = [c.removeprefix("stage_") for c in led.columns if c.startswith("stage_")]
        if enabled and result is not None and len(result.scenario.pipeline) > 1:
            for name, cfg in zip(stages, result.scenario.pipeline):
                try:
                    r = run(result.scenario.replace(pipeline=(cfg,)), result.seed, len(led), progress=progress)
                except CostlabError:
                    continue   # a stage that cannot run alone (e.g. needs another) is left out
                m = run_metrics(r.ledger, self.sla_ms)
                points.append({"label": f"{strategy_of(name)} only", "cost_usd": m["cost_usd"],
                               "quality": m["quality_mean"], "latency_p95_ms": m["latency_p95_ms"]})
        points.append({"label": "full pipeline" if stages else "as run", "cost_usd": float(led["cost_usd"].sum()),
                       "quality": self.run_m["quality_mean"], "latency_p95_ms": self.run_m["latency_p95_ms"]})
        self.frontier_points = points
        self.n["frontier"] = points

    # -- charts ----------------------------------------------------------------------------------------
    def charts(self) -> None:
        from lab import plots  # matplotlib: loaded only when a report is drawn

        led, result = self.led, self.src.result
        c = self.chart_list
        c.append(Chart("cost_over_time.png", plots.cost_over_time(led, self.bucket_s, anomalies=self.anomalies),
                       f"Cost per {_duration(self.bucket_s)}, with and without optimization; red dots mark anomalies."))
        c.append(Chart("savings_waterfall.png", plots.savings_waterfall(led),
                       "From the unoptimized bill to the optimized one, strategy by strategy."))
        c.append(Chart("latency_cdf.png", plots.latency_cdf(result if result is not None else led, self.sla_ms),
                       "Share of requests answered within each latency; the dashed line is the SLA."))
        c.append(Chart("cost_quality_frontier.png", plots.cost_quality_frontier(self.frontier_points),
                       "Cost against answer quality for each pipeline variant; the line joins the ones "
                       "nothing beats on both."))
        for k in self.attribution_keys[:2]:
            c.append(Chart(f"attribution_{k}.png", plots.attribution_bars(led, k, teams=self.teams),
                           f"Cost paid and saved by {k}."))
        for kpi in self.custom_kpis:
            slug = "".join(ch if ch.isalnum() else "_" for ch in kpi.name.lower()).strip("_") or "kpi"
            c.append(Chart(f"kpi_{slug}.png", plots.kpi_over_time(kpi, led, self.bucket_s),
                           f"{kpi.name} per {_bucket(self.bucket_s)} bucket, with its warning and critical lines."))
        if self.forecast is not None:
            c.append(Chart("forecast.png", plots.cost_over_time(led, self.bucket_s, baseline=False,
                                                                forecast=self.forecast,
                                                                title="Cost forecast"),
                           f"Optimized cost per {_duration(self.bucket_s)} and the forecast with its 95 % interval."))
        self.n["charts"] = {ch.file: ch.caption for ch in c}

    def report(self) -> Report:
        self.n["executive_summary"] = [s.text for s in self.summary]
        return Report(self.title, self.subtitle, self.summary, self.n, self.chart_list, self.sections)


# --------------------------------------------------------------------------- formatting


_ALERT_MEANING = {"SLA violations": " — over 1 % of a 5-minute window slow or failed",
                  "cache hit rate": " — under 50 % over 5 minutes"}


def _duration(s: float) -> str:
    """A span in words: "1 hour", "2.5 hours", "3 days", "45 minutes", "5 s"."""
    if s is None or not np.isfinite(s):
        return "n/a"

    def amount(value: float, unit: str) -> str:
        text = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
        return f"{text} {unit}" + ("" if text == "1" else "s")

    if s >= 2 * 86400 or (s >= 86400 and s % 86400 == 0):
        return amount(s / 86400, "day")
    if s >= 3600 - 30:
        return amount(s / 3600, "hour")
    if s >= 60:
        return amount(s / 60, "minute")
    return f"{s:g} s"


def _bucket(s: float) -> str:
    """A bucket size as an adjective: "1-minute", "5-second", "2-hour"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:.0f}-{unit}"
    return f"{s:g}-second"


def _nz(x: float) -> float:
    """-0.0 -> 0.0, so a zero change never prints as "-0.0"."""
    return 0.0 if abs(x) < 5e-5 else x


def _clock(t_s: float) -> str:
    if t_s is None or not np.isfinite(t_s):
        return "–"
    t = int(round(t_s))
    return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}"


def _seed_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _signed_pct(x) -> str:
    return f"{x:+.1f} %" if x is not None and np.isfinite(x) else fmt.MISSING


_BY_UNIT = {"USD": fmt.usd, "ms": fmt.ms, "tokens": fmt.count, "calls": fmt.count}


def _unit_value(v, unit: str, share_decimals: int = 1, missing: str = "") -> str:
    """A KPI or metric value in its unit (lab.fmt); `missing` when there is none (a threshold not set)."""
    if v is None or not np.isfinite(v):
        return missing
    if unit == "share":
        return fmt.share(v, share_decimals)
    return _BY_UNIT.get(unit, lambda x: f"{x:.3f}")(v)


def _table(frame: pd.DataFrame, fmts: dict, heads: dict) -> Table:
    """A table block from a DataFrame, index first, with a formatter per column shown."""
    head = [str(n or "") for n in frame.index.names] + [heads.get(c, c) for c in frame.columns if c in fmts]
    rows = []
    for idx, r in frame.iterrows():
        key = idx if isinstance(idx, tuple) else (idx,)
        rows.append([str(k) for k in key] + [fmts[c](r[c]) for c in frame.columns if c in fmts])
    return Table(head, rows)
