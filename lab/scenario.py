"""What a scenario is: traffic, providers, the optimization pipeline and the SLA, as frozen dataclasses.

The field names are a contract (DESIGN.md, scenarios/README.md), and each field's default
lives here, once: `lab.loader` reads a scenario file into these classes and takes every
default it does not find in the file from them, and a test checks the README's tables
against them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lab.dists import Dist

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
class Sessions:
    """Conversation-shaped traffic: `arrivals` are users opening a chat, each sending several turns.

    Turn k+1 is sent a think time after turn k is sent; with `history`, each turn resends the
    conversation so far (its input grows by the previous turn's message and answer), after
    the system prompt and a `shared_prefix_tokens` context of its own (a document, a profile).
    """

    turns: Dist = Dist("uniform", low=1.0, high=8.0)   # rounded to whole turns, at least 1 (mean 4.5)
    think_time_s: Dist = Dist("exponential", mean=30.0)
    shared_prefix_tokens: int = 0
    history: bool = True


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
    sessions: Sessions | None = None       # users and their conversations (arrivals = sessions opened)


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
    """The latency target: at most one of `p95_ms` / `p99_ms` (0: none)."""

    p95_ms: float = 0.0
    p99_ms: float = 0.0
    overhead_p95_ms: float = 0.0           # alert when the stages' own p95 latency exceeds this; 0 = off

    @property
    def limit_ms(self) -> float:
        """The latency a request must not exceed to meet the SLA (0: no target)."""
        return self.p95_ms or self.p99_ms

    @property
    def metric(self) -> str | None:
        """The run metric the SLA bounds ("p95_ms" or "p99_ms"; None: no target)."""
        return "p95_ms" if self.p95_ms else "p99_ms" if self.p99_ms else None


@dataclass(frozen=True)
class Route:
    """Requests this route matches (any listed value; empty = any) and the named stages they meet."""

    name: str = ""
    feature: tuple[str, ...] = ()
    tenant: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A whole experiment: traffic, providers, the optimization pipeline and the SLA."""

    name: str
    traffic: Traffic
    providers: tuple[Provider, ...]
    pipeline: tuple[Any, ...] = ()
    routes: tuple[Route, ...] = ()         # none: every request meets the whole pipeline
    sla: Sla = Sla()
    duration_s: float | None = None
    requests: int | None = None
    description: str = ""
    path: str = ""
    stage_names: tuple[str, ...] = field(default=())
    #: the dict it was read from (what `lab.store` saves as TOML); None once changed in code
    source: dict | None = field(default=None, compare=False, repr=False)

    def replace(self, **changes) -> Scenario:
        """A copy with some top-level fields changed (e.g. `pipeline=()` for the baseline).

        The copy no longer matches the file it came from, so it keeps no `source`.
        """
        return dataclasses.replace(self, **{"source": None, **changes})
