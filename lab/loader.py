"""Scenario files: TOML read with `tomllib` into `lab.scenario`'s dataclasses, validated at load time.

A bad file raises one `ScenarioError` naming the file, the field and what was expected,
and nothing runs. Each `[[pipeline]]` table is read by its stage's own `parse` (the
registry in `lab.stages`), which is why the reader sits above the stages while the
dataclasses stay a leaf. A field the file leaves out takes its default from the dataclass.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from lab.config import Table
from lab.errors import PricingError, ScenarioError
from lab.pricing import PROVIDERS, SERVICE_TIERS, model_prices
from lab.scenario import (
    ARRIVAL_PROCESSES,
    PRIORITIES,
    TOKEN_DISTS,
    TRACE_FORMATS,
    Arrivals,
    Prefix,
    Prompts,
    Provider,
    Route,
    Scenario,
    Sessions,
    Sla,
    Traffic,
    Updates,
    Weighted,
)
from lab.stages import parse_stage, stage_labels, validate_pipeline


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError on the first problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(path), "", "file not found") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), "", f"expected a UTF-8 TOML file ({type(exc).__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(str(path), "", "arrays or tables nested too deeply to read") from None
    return scenario_from_dict(data, path=str(path))


def scenario_from_dict(data: dict, path: str = "<scenario>") -> Scenario:
    """Validate an already-parsed scenario (a dict shaped like the TOML file)."""
    top = Table(path, "", data)
    name = top.string("name", Path(path).stem)
    description = top.string("description", Scenario.description)
    duration_s = top.number("duration_s", Scenario.duration_s, min=0.0, strict_min=True)
    requests = top.integer("requests", Scenario.requests, min=1)
    traffic = _traffic(top.table("traffic"), base_dir=Path(path).parent)
    if duration_s is None and requests is None and traffic.arrivals.process != "trace":
        top.fail("duration_s", "is required (or give requests = N)")
    if not top.has("providers"):
        top.fail("providers", "is required: add at least one [[providers]] table")
    providers = tuple(_provider(t) for t in top.tables("providers"))
    if not providers:
        top.fail("providers", "expected at least one [[providers]] table")
    pipeline = tuple(parse_stage(t) for t in top.tables("pipeline", []))
    sla_t = top.table("sla", {})
    sla = Sla(p95_ms=sla_t.number("p95_ms", Sla.p95_ms, min=0.0), p99_ms=sla_t.number("p99_ms", Sla.p99_ms, min=0.0),
              overhead_p95_ms=sla_t.number("overhead_p95_ms", Sla.overhead_p95_ms, min=0.0))
    if sla.p95_ms and sla.p99_ms:
        sla_t.fail("p99_ms", "give one latency target: p95_ms or p99_ms, not both")
    sla_t.done()
    routes = _routes(top, pipeline, traffic)
    top.done()
    scenario = Scenario(name=name, description=description, traffic=traffic, providers=providers,
                        pipeline=pipeline, routes=routes, sla=sla, duration_s=duration_s, requests=requests, path=path,
                        source=copy.deepcopy(data))
    validate_pipeline(scenario, Table(path, "", {}))
    return scenario


def _routes(top: Table, pipeline, traffic: Traffic) -> tuple[Route, ...]:
    """`[[routes]]`: match fields naming known tenants/features/priorities, stages named in pipeline order."""
    labels = stage_labels(pipeline)
    if len(set(labels)) != len(labels):
        top.fail("pipeline", f"stage names must be distinct for routes, got {labels}")
    known = {"feature": [w.name for w in traffic.features], "tenant": [w.name for w in traffic.tenants],
             "priority": list(PRIORITIES)}
    out = []
    for t in top.tables("routes", []):
        match = {}
        for key, names in known.items():
            values = _strings(t, key)
            for v in values:
                if v not in names:
                    t.fail(key, f"unknown {key} {v!r}: expected one of {', '.join(names)}")
            match[key] = values
        stages = _strings(t, "stages")
        for s in stages:
            if s not in labels:
                t.fail("stages", f"no [[pipeline]] stage is named {s!r}: expected one of {', '.join(labels)}")
        order = [labels.index(s) for s in stages]
        if order != sorted(set(order)):
            t.fail("stages", f"list each stage once, in [[pipeline]] order ({', '.join(labels)}), got {list(stages)}")
        out.append(Route(name=t.string("name", Route.name), stages=stages, **match))
        t.done()
    return tuple(out)


def _strings(t: Table, key: str) -> tuple[str, ...]:
    """A string or a list of strings (a match field, a stage list); absent: ()."""
    value = t.raw(key, [])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        t.fail(key, f"expected a string or a list of strings, got {value!r:.60}")
    return tuple(value)


def _weighted(t: Table, key: str) -> tuple[Weighted, ...]:
    if not t.has(key):
        return getattr(Traffic, key)
    out = []
    for item in t.tables(key):
        out.append(Weighted(item.string("name"), item.number("weight", Weighted.weight, min=0.0, strict_min=True)))
        item.done()
    if not out:
        t.fail(key, "expected at least one entry")
    names = [w.name for w in out]
    if len(set(names)) != len(names):
        t.fail(key, f"expected distinct names, got {names}")
    return tuple(out)


def _traffic(t: Table, base_dir: Path) -> Traffic:
    arrivals = _arrivals(t.table("arrivals"), base_dir)
    p = t.table("prompts", {})
    prompts = Prompts(
        catalog=p.integer("catalog", Prompts.catalog, min=0),
        popularity=p.dist("popularity", Prompts.popularity, kinds=("zipf",)),
        paraphrases=p.integer("paraphrases", Prompts.paraphrases, min=1),
        similarity=p.dist("similarity", Prompts.similarity, kinds=("constant", "uniform", "empirical")),
        non_cacheable_share=p.probability("non_cacheable_share", Prompts.non_cacheable_share),
    )
    if prompts.similarity.dist == "uniform" and prompts.similarity.high > 1.0:
        p.fail("similarity.high", f"expected a similarity <= 1, got {prompts.similarity.high:g}")
    p.done()
    is_trace = arrivals.process == "trace"
    input_tokens = t.dist("input_tokens", Traffic.input_tokens, kinds=TOKEN_DISTS)
    output_tokens = t.dist("output_tokens", Traffic.output_tokens, kinds=TOKEN_DISTS)
    if is_trace and (t.has("input_tokens") or t.has("output_tokens")):
        t.fail("input_tokens", "a trace carries its own token counts: remove input_tokens/output_tokens")
    priorities = Traffic.priorities
    if t.has("priorities"):
        pt = t.table("priorities")
        priorities = tuple((k, pt.probability(k)) for k in PRIORITIES if pt.has(k))
        pt.done()
        total = sum(s for _, s in priorities)
        if abs(total - 1.0) > 1e-9:
            pt.fail("", f"expected shares that sum to 1, got {total:g}")
    prefix = None
    if t.has("prefix"):
        pt = t.table("prefix")
        prefix = Prefix(system_tokens=pt.integer("system_tokens", min=0),
                        variants=pt.integer("variants", Prefix.variants, min=1),
                        block_tokens=pt.integer("block_tokens", Prefix.block_tokens, min=1))
        pt.done()
    updates = None
    if t.has("updates"):
        ut = t.table("updates")
        updates = Updates(rate_per_s=ut.number("rate_per_s", min=0.0),
                          follow_popularity=ut.boolean("follow_popularity", Updates.follow_popularity))
        ut.done()
    sessions = None
    if t.has("sessions"):
        st = t.table("sessions")
        if is_trace:
            st.fail("", "a trace carries its own arrivals: sessions apply to generated traffic")
        sessions = Sessions(turns=st.dist("turns", Sessions.turns, kinds=TOKEN_DISTS),
                            think_time_s=st.dist("think_time_s", Sessions.think_time_s, kinds=TOKEN_DISTS),
                            shared_prefix_tokens=st.integer("shared_prefix_tokens", Sessions.shared_prefix_tokens,
                                                            min=0),
                            history=st.boolean("history", Sessions.history))
        st.done()
    traffic = Traffic(arrivals=arrivals, sessions=sessions, prompts=prompts, input_tokens=input_tokens, output_tokens=output_tokens,
                      tenants=_weighted(t, "tenants"), features=_weighted(t, "features"),
                      priorities=priorities, prefix=prefix, updates=updates,
                      max_tokens=t.integer("max_tokens", Traffic.max_tokens, min=1),
                      difficulty=t.dist("difficulty", Traffic.difficulty, kinds=("constant", "uniform", "empirical")),
                      min_quality=t.probability("min_quality", Traffic.min_quality),
                      may_wait_share=t.probability("may_wait_share", Traffic.may_wait_share))
    t.done()
    return traffic


def _arrivals(t: Table, base_dir: Path) -> Arrivals:
    process = t.string("process", choices=ARRIVAL_PROCESSES)
    if process == "poisson":
        a = Arrivals(process, rate_per_s=t.number("rate_per_s", min=0.0, strict_min=True))
    elif process == "diurnal":
        profile = t.numbers("profile", Arrivals.profile, min=0.0)
        if profile and sum(profile) <= 0:
            t.fail("profile", "expected at least one positive rate")
        a = Arrivals(process, rate_per_s=t.number("rate_per_s", min=0.0, strict_min=True), profile=profile,
                     period_s=t.number("period_s", Arrivals.period_s, min=0.0, strict_min=True))
    elif process == "mmpp":
        a = Arrivals(process, rate_high_per_s=t.number("rate_high_per_s", min=0.0, strict_min=True),
                     rate_low_per_s=t.number("rate_low_per_s", min=0.0),
                     mean_high_s=t.number("mean_high_s", min=0.0, strict_min=True),
                     mean_low_s=t.number("mean_low_s", min=0.0, strict_min=True))
    else:
        raw = t.string("path")
        trace_path = Path(raw) if Path(raw).is_absolute() else base_dir / raw
        if not trace_path.is_file():
            t.fail("path", f"trace file not found: {trace_path}")
        a = Arrivals(process, path=str(trace_path), format=t.string("format", choices=TRACE_FORMATS),
                     skip_bad_rows=t.boolean("skip_bad_rows", Arrivals.skip_bad_rows),
                     time_scale=t.number("time_scale", Arrivals.time_scale, min=0.0, strict_min=True))
    t.done()
    return a


def _provider(t: Table) -> Provider:
    name = t.string("name", choices=PROVIDERS)
    model = t.string("model")
    try:
        model_prices(name, model)
    except PricingError as exc:
        t.fail("model", str(exc))
    latency = t.dist("latency_ms", Provider.latency_ms, kinds=TOKEN_DISTS)
    ttft = t.dist("ttft_ms", Provider.ttft_ms, kinds=TOKEN_DISTS)
    if latency is not None and ttft is not None:
        t.fail("ttft_ms", "give either latency_ms or ttft_ms (+ tokens_per_s), not both")
    tokens_per_s = t.number("tokens_per_s", Provider.tokens_per_s, min=0.0)
    if latency is not None and tokens_per_s:
        t.fail("tokens_per_s", "only applies with ttft_ms (latency_ms is the whole service time)")
    outages = []
    for o in t.tables("outages", []):
        start, end = o.number("start_s", min=0.0), o.number("end_s", min=0.0)
        if end <= start:
            o.fail("end_s", f"expected end_s > start_s ({start:g}), got {end:g}")
        o.done()
        outages.append((start, end))
    kind = t.string("kind", Provider.kind, choices=("mock", "live", "replay"))
    cassette = t.string("cassette", Provider.cassette)
    cassette = str(Path(t.path).parent / cassette) if cassette else None
    if kind != "mock" and not t.has("budget_usd"):
        t.fail("budget_usd", "a live or replay provider needs a spend cap in US dollars, e.g. budget_usd = 0.50")
    if kind == "replay" and cassette is None:
        t.fail("cassette", 'kind = "replay" answers from a cassette: give its path')
    if kind != "mock" and t.has("service_tier") and t.data["service_tier"] != "standard":
        t.fail("service_tier", "live and replayed calls use the standard tier")
    p = Provider(name=name, model=model, kind=kind, base_url=t.string("base_url", Provider.base_url), cassette=cassette,
                 budget_usd=t.number("budget_usd", Provider.budget_usd, min=0.0),
                 cache=t.string("cache", Provider.cache, choices=("5m", "1h")),
                 concurrency=t.integer("concurrency", Provider.concurrency, min=1), latency_ms=latency, ttft_ms=ttft,
                 tokens_per_s=tokens_per_s, error_rate=t.probability("error_rate", Provider.error_rate),
                 bad_request_rate=t.probability("bad_request_rate", Provider.bad_request_rate),
                 error_latency_ms=t.number("error_latency_ms", Provider.error_latency_ms, min=0.0),
                 outages=tuple(sorted(outages)),
                 rate_limits=t.string("rate_limits", Provider.rate_limits, choices=("none", "published")),
                 rpm=t.number("rpm", Provider.rpm, min=0.0), tpm=t.number("tpm", Provider.tpm, min=0.0),
                 itpm=t.number("itpm", Provider.itpm, min=0.0), otpm=t.number("otpm", Provider.otpm, min=0.0),
                 service_tier=t.string("service_tier", Provider.service_tier, choices=SERVICE_TIERS),
                 flex_slowdown=t.number("flex_slowdown", Provider.flex_slowdown, min=0.0, strict_min=True),
                 flex_shed_rate=t.probability("flex_shed_rate", Provider.flex_shed_rate),
                 priority_speedup=t.number("priority_speedup", Provider.priority_speedup, min=0.0, strict_min=True))
    if p.service_tier != "standard":
        try:
            model_prices(name, model, p.service_tier)
        except PricingError as exc:
            t.fail("service_tier", str(exc))
    t.done()
    return p
