"""Scenario files: TOML read with `tomllib` into frozen dataclasses, validated at load time.

The field names are a contract (DESIGN.md, scenarios/README.md). A bad file raises one
`ScenarioError` naming the file, the field and what was expected, and nothing runs.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.config import Table
from lab.dists import Dist
from lab.errors import PricingError, ScenarioError

ARRIVAL_PROCESSES = ("poisson", "diurnal", "mmpp", "trace")
TRACE_FORMATS = ("azure", "mooncake", "csv")
PRIORITIES = ("high", "normal", "low")
TOKEN_DISTS = ("constant", "exponential", "lognormal", "uniform", "empirical")


@dataclass(frozen=True)
class Arrivals:
    """When requests arrive: a stochastic process or a recorded trace."""

    process: str
    rate_per_s: float = 0.0
    profile: tuple[float, ...] = ()        # diurnal: relative rate per equal bucket of period_s
    period_s: float = 86400.0
    rate_high_per_s: float = 0.0           # mmpp: the bursty state
    rate_low_per_s: float = 0.0
    mean_high_s: float = 0.0
    mean_low_s: float = 0.0
    path: str = ""                         # trace
    format: str = ""
    skip_bad_rows: bool = False
    time_scale: float = 1.0                # trace: multiply recorded gaps (0.5 = twice as fast)


@dataclass(frozen=True)
class Prompts:
    """Which prompt each request sends: a catalog with Zipf popularity, drawn independently."""

    catalog: int = 0                       # 0: every request is unique
    popularity: Dist = Dist("zipf", alpha=0.0)
    paraphrases: int = 1                   # wordings per intent (semantic cache groups)
    similarity: Dist = Dist("uniform", low=0.75, high=1.0)
    non_cacheable_share: float = 0.0       # PII or temperature > 0: never stored by a cache


@dataclass(frozen=True)
class Weighted:
    """A tenant or feature and its share of traffic."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class Prefix:
    """Shared leading tokens (a system prompt) that provider prompt caches can reuse."""

    system_tokens: int = 0
    variants: int = 1
    block_tokens: int = 128


@dataclass(frozen=True)
class Updates:
    """The data behind answers changes: each update makes cached answers for one prompt stale."""

    rate_per_s: float = 0.0
    follow_popularity: bool = True         # popular prompts change as often as they are asked


@dataclass(frozen=True)
class Traffic:
    arrivals: Arrivals
    prompts: Prompts = Prompts()
    input_tokens: Dist = Dist("lognormal", median=800, sigma=0.6)
    output_tokens: Dist = Dist("lognormal", median=200, sigma=0.5)
    tenants: tuple[Weighted, ...] = (Weighted("default"),)
    features: tuple[Weighted, ...] = (Weighted("default"),)
    priorities: tuple[tuple[str, float], ...] = (("normal", 1.0),)
    prefix: Prefix | None = None
    updates: Updates | None = None
    max_tokens: int = 4096                 # the output cap each request sends (budgets reserve on it)
    difficulty: Dist | None = None         # enables the quality model (lab/quality.py)
    min_quality: float = 0.0               # the quality a request needs (routers respect it)
    may_wait_share: float = 0.0            # share of requests that tolerate hours (batch APIs)


@dataclass(frozen=True)
class Provider:
    """A provider and model served by the mock service model (or, later, a live SDK)."""

    name: str
    model: str
    kind: str = "mock"
    concurrency: int = 64
    latency_ms: Dist | None = None
    ttft_ms: Dist | None = None
    tokens_per_s: float = 0.0
    error_rate: float = 0.0
    bad_request_rate: float = 0.0          # 400s: the request itself is wrong; never worth a retry
    error_latency_ms: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()
    rate_limits: str = "none"              # "none" | "published" (tier-1 limits from lab/data/models.toml)
    rpm: float = 0.0                       # explicit limits override; 0 = none
    tpm: float = 0.0                       # input + max_tokens per minute (OpenAI's estimate)
    itpm: float = 0.0                      # Anthropic: input tokens per minute
    otpm: float = 0.0                      # Anthropic: output tokens per minute, estimated from max_tokens
    base_url: str | None = None            # kind "live": handed to the SDK as it takes it (e.g. a fake server)
    cassette: str | None = None            # "live": calls are appended here; "replay": answered from here
    budget_usd: float | None = None        # "live" | "replay": hard spend cap of a run and its baseline together
    cache: str | None = None               # anthropic "live": cache breakpoints "5m" | "1h"
    service_tier: str = "standard"         # "standard" | "flex" (batch prices, slower, may be shed) | "priority"
    flex_slowdown: float = 2.0             # flex service time multiplier (an assumption; OpenAI: "slower")
    flex_shed_rate: float = 0.0            # share of flex calls refused with 429 (resource unavailable)
    priority_speedup: float = 0.8          # priority service time multiplier (an assumption)

    def limits(self, info) -> dict[str, float]:
        """The per-minute limits this provider enforces, by kind (rpm, tpm, itpm, otpm)."""
        out = {"rpm": self.rpm, "tpm": self.tpm, "itpm": self.itpm, "otpm": self.otpm}
        if self.rate_limits == "published":
            out["rpm"] = out["rpm"] or info.rpm
            out["tpm"] = out["tpm"] or info.tpm
        return out


@dataclass(frozen=True)
class Sla:
    p95_ms: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A whole experiment: traffic, providers, the optimization pipeline and the SLA."""

    name: str
    traffic: Traffic
    providers: tuple[Provider, ...]
    pipeline: tuple[Any, ...] = ()
    sla: Sla = Sla()
    duration_s: float | None = None
    requests: int | None = None
    description: str = ""
    path: str = ""
    stage_names: tuple[str, ...] = field(default=())

    def replace(self, **changes) -> Scenario:
        """A copy with some top-level fields changed (e.g. `pipeline=()` for the baseline)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- reading


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
    return scenario_from_dict(data, path=str(path))


def scenario_from_dict(data: dict, path: str = "<scenario>") -> Scenario:
    """Validate an already-parsed scenario (a dict shaped like the TOML file)."""
    top = Table(path, "", data)
    name = top.string("name", Path(path).stem)
    description = top.string("description", "")
    duration_s = top.number("duration_s", None, min=0.0, strict_min=True)
    requests = top.integer("requests", None, min=1)
    traffic = _traffic(top.table("traffic"), base_dir=Path(path).parent)
    if duration_s is None and requests is None and traffic.arrivals.process != "trace":
        top.fail("duration_s", "is required (or give requests = N)")
    if not top.has("providers"):
        top.fail("providers", "is required: add at least one [[providers]] table")
    providers = tuple(_provider(t) for t in top.tables("providers"))
    if not providers:
        top.fail("providers", "expected at least one [[providers]] table")
    from lab.stages import parse_stage

    pipeline = tuple(parse_stage(t) for t in top.tables("pipeline", []))
    sla_t = top.table("sla", {})
    sla = Sla(p95_ms=sla_t.number("p95_ms", 0.0, min=0.0))
    sla_t.done()
    top.done()
    scenario = Scenario(name=name, description=description, traffic=traffic, providers=providers,
                        pipeline=pipeline, sla=sla, duration_s=duration_s, requests=requests, path=path)
    from lab.stages import validate_pipeline

    validate_pipeline(scenario, Table(path, "", {}))
    return scenario


def _weighted(t: Table, key: str) -> tuple[Weighted, ...]:
    if not t.has(key):
        return (Weighted("default"),)
    out = []
    for item in t.tables(key):
        out.append(Weighted(item.string("name"), item.number("weight", 1.0, min=0.0, strict_min=True)))
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
        catalog=p.integer("catalog", 0, min=0),
        popularity=p.dist("popularity", Dist("zipf", alpha=0.0), kinds=("zipf",)),
        paraphrases=p.integer("paraphrases", 1, min=1),
        similarity=p.dist("similarity", Prompts.similarity, kinds=("constant", "uniform", "empirical")),
        non_cacheable_share=p.probability("non_cacheable_share", 0.0),
    )
    if prompts.similarity.dist == "uniform" and prompts.similarity.high > 1.0:
        p.fail("similarity.high", f"expected a similarity <= 1, got {prompts.similarity.high:g}")
    p.done()
    is_trace = arrivals.process == "trace"
    default_in, default_out = Traffic.input_tokens, Traffic.output_tokens
    input_tokens = t.dist("input_tokens", default_in, kinds=TOKEN_DISTS)
    output_tokens = t.dist("output_tokens", default_out, kinds=TOKEN_DISTS)
    if is_trace and (t.has("input_tokens") or t.has("output_tokens")):
        t.fail("input_tokens", "a trace carries its own token counts: remove input_tokens/output_tokens")
    priorities = (("normal", 1.0),)
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
        prefix = Prefix(system_tokens=pt.integer("system_tokens", min=0), variants=pt.integer("variants", 1, min=1),
                        block_tokens=pt.integer("block_tokens", 128, min=1))
        pt.done()
    updates = None
    if t.has("updates"):
        ut = t.table("updates")
        updates = Updates(rate_per_s=ut.number("rate_per_s", min=0.0),
                          follow_popularity=ut.boolean("follow_popularity", True))
        ut.done()
    traffic = Traffic(arrivals=arrivals, prompts=prompts, input_tokens=input_tokens, output_tokens=output_tokens,
                      tenants=_weighted(t, "tenants"), features=_weighted(t, "features"),
                      priorities=priorities, prefix=prefix, updates=updates,
                      max_tokens=t.integer("max_tokens", 4096, min=1),
                      difficulty=t.dist("difficulty", None, kinds=("constant", "uniform", "empirical")),
                      min_quality=t.probability("min_quality", 0.0),
                      may_wait_share=t.probability("may_wait_share", 0.0))
    t.done()
    return traffic


def _arrivals(t: Table, base_dir: Path) -> Arrivals:
    process = t.string("process", choices=ARRIVAL_PROCESSES)
    if process == "poisson":
        a = Arrivals(process, rate_per_s=t.number("rate_per_s", min=0.0, strict_min=True))
    elif process == "diurnal":
        profile = t.numbers("profile", (), min=0.0) if t.has("profile") else ()
        if profile and sum(profile) <= 0:
            t.fail("profile", "expected at least one positive rate")
        a = Arrivals(process, rate_per_s=t.number("rate_per_s", min=0.0, strict_min=True), profile=profile,
                     period_s=t.number("period_s", 86400.0, min=0.0, strict_min=True))
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
                     skip_bad_rows=t.boolean("skip_bad_rows", False),
                     time_scale=t.number("time_scale", 1.0, min=0.0, strict_min=True))
    t.done()
    return a


def _provider(t: Table) -> Provider:
    from lab.pricing import PROVIDERS, SERVICE_TIERS, model_prices

    name = t.string("name", choices=PROVIDERS)
    model = t.string("model")
    try:
        model_prices(name, model)
    except PricingError as exc:
        t.fail("model", str(exc))
    latency = t.dist("latency_ms", None, kinds=TOKEN_DISTS)
    ttft = t.dist("ttft_ms", None, kinds=TOKEN_DISTS)
    if latency is not None and ttft is not None:
        t.fail("ttft_ms", "give either latency_ms or ttft_ms (+ tokens_per_s), not both")
    tokens_per_s = t.number("tokens_per_s", 0.0, min=0.0)
    if latency is not None and tokens_per_s:
        t.fail("tokens_per_s", "only applies with ttft_ms (latency_ms is the whole service time)")
    outages = []
    for o in t.tables("outages", []):
        start, end = o.number("start_s", min=0.0), o.number("end_s", min=0.0)
        if end <= start:
            o.fail("end_s", f"expected end_s > start_s ({start:g}), got {end:g}")
        o.done()
        outages.append((start, end))
    kind = t.string("kind", "mock", choices=("mock", "live", "replay"))
    cassette = t.string("cassette", None)
    cassette = str(Path(t.path).parent / cassette) if cassette else None
    if kind != "mock" and not t.has("budget_usd"):
        t.fail("budget_usd", "a live or replay provider needs a spend cap in US dollars, e.g. budget_usd = 0.50")
    if kind == "replay" and cassette is None:
        t.fail("cassette", 'kind = "replay" answers from a cassette: give its path')
    if kind != "mock" and t.has("service_tier") and t.data["service_tier"] != "standard":
        t.fail("service_tier", "live and replayed calls use the standard tier")
    p = Provider(name=name, model=model, kind=kind, base_url=t.string("base_url", None), cassette=cassette,
                 budget_usd=t.number("budget_usd", None, min=0.0), cache=t.string("cache", None, choices=("5m", "1h")),
                 concurrency=t.integer("concurrency", 64, min=1), latency_ms=latency, ttft_ms=ttft,
                 tokens_per_s=tokens_per_s, error_rate=t.probability("error_rate", 0.0),
                 bad_request_rate=t.probability("bad_request_rate", 0.0),
                 error_latency_ms=t.number("error_latency_ms", 0.0, min=0.0), outages=tuple(sorted(outages)),
                 rate_limits=t.string("rate_limits", "none", choices=("none", "published")),
                 rpm=t.number("rpm", 0.0, min=0.0), tpm=t.number("tpm", 0.0, min=0.0),
                 itpm=t.number("itpm", 0.0, min=0.0), otpm=t.number("otpm", 0.0, min=0.0),
                 service_tier=t.string("service_tier", "standard", choices=SERVICE_TIERS),
                 flex_slowdown=t.number("flex_slowdown", 2.0, min=0.0, strict_min=True),
                 flex_shed_rate=t.probability("flex_shed_rate", 0.0),
                 priority_speedup=t.number("priority_speedup", 0.8, min=0.0, strict_min=True))
    if p.service_tier != "standard":
        try:
            model_prices(name, model, p.service_tier)
        except PricingError as exc:
            t.fail("service_tier", str(exc))
    t.done()
    return p
