"""The gateway's TOML file: where to listen, the upstreams and their key variables, the class's limits, the pipeline.

```toml
[gateway]
host = "127.0.0.1"
port = 8780
store = "gateway.db"            # SQLite file (relative to this file) or postgresql://...
default_max_tokens = 1024       # sent upstream when a request gives none, so its worst case is bounded
experiment = "gateway"          # the experiment whose recorded run holds every call ("" records none)
flush_rows = 5000               # copy settled rows into that run every this many rows...
flush_s = 30.0                  # ...or seconds, and on shutdown
workers = 1                     # processes sharing the address (caps and ledger in the store; caches per process)

[class]
daily_usd = 20.0                # the whole class, per UTC day
total_usd = 200.0

[learners]                      # defaults for `costlab gateway learner add`
daily_usd = 0.50

[[upstreams]]
provider = "openai"             # "openai" | "anthropic" | "google"
base_url = "https://api.openai.com/v1"
key_env = "OPENAI_API_KEY"      # the instructor's key is read from this variable, never from the file

[[pipeline]]                    # the very fields a scenario's stage takes
stage = "cache"
ttl_s = 600

[[pipeline]]
stage = "retry"
fallback = true                 # when the provider's upstreams give up, try the next ones...
fallback_models = ["anthropic/claude-haiku-4-5"]   # ...then these (gateway only; translated)
```

Stages that make sense on live traffic are `cache`, `dedup`, `rate_limit`, `budget`,
`retry` and the gateway's own `output_cap`; any other stage is refused in one line. Several
`[[upstreams]]` of one provider are tried in order when `retry` has `fallback = true`.
`fallback_models` (gateway only, in the retry table, needs `fallback = true`) names
`provider/model` targets tried in order after those: a non-streaming, text-only chat is
translated to the target's format and its answer back to the caller's; a stream, or a
request with anything else (tools, images, the Responses API), falls back within its provider only.

`router` takes `strategy = "cheapest"` only (the others need the simulator's latency and
quality models) and a gateway-only `models = ["openai/gpt-4o-mini", ...]`: each request goes
to the cheapest listed model of its own provider whose context window holds it, priced as its
worst case (prompt plus max_tokens) with genai-prices.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lab.config import Table, did_you_mean
from lab.errors import CostlabError, ScenarioError
from lab.pricing import PROVIDERS, model_prices
from lab.stages import STAGES, parse_stage

#: stages the gateway serves live; the rest model the world or need the simulator's clock
LIVE_STAGES = ("cache", "dedup", "rate_limit", "budget", "retry", "output_cap", "router")
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com",
                     "google": "https://generativelanguage.googleapis.com"}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "google": "GEMINI_API_KEY"}


@dataclass(frozen=True)
class OutputCap:
    """The gateway's own stage: every request's max_tokens is cut to `max_tokens`."""

    stage: str = "output_cap"
    max_tokens: int = 1024


@dataclass(frozen=True)
class Upstream:
    provider: str
    base_url: str
    key_env: str


@dataclass(frozen=True)
class Limits:
    """A learner's (or the class's) caps; None = no cap of that kind."""

    daily_usd: float | None = None
    total_usd: float | None = None
    rpm: float | None = None


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8780
    store: str = "gateway.db"
    default_max_tokens: int = 1024
    upstreams: dict[str, tuple[Upstream, ...]] = field(default_factory=dict)   # in fallback order
    class_limits: Limits = Limits()
    learner_defaults: Limits = Limits()
    pipeline: tuple = ()
    fallback_models: tuple[tuple[str, str], ...] = ()   # (provider, model) after the caller's upstreams
    route_models: tuple[tuple[str, str], ...] = ()      # (provider, model) the router may pick from
    hub_api_url: str | None = None       # JupyterHub's API: learners may use their hub token
    experiment: str = "gateway"          # its recorded run in the experiment store (the same database)
    # a flush costs ~55 us a row in a burst that holds the GIL: few large ones keep the calls' tail short
    flush_rows: int = 5000
    flush_s: float = 30.0
    workers: int = 1                     # processes accepting on the one address (pre-forked)
    path: str = "<gateway>"

    def stage(self, name: str):
        """The pipeline's config for stage `name`, or None."""
        return next((s for s in self.pipeline if s.stage == name), None)


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway file; a bad field is one ScenarioError line naming it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(str(path), "", "file not found") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ScenarioError(str(path), "", f"expected a UTF-8 TOML file ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "", f"not valid TOML: {exc}") from None
    return config_from_dict(data, str(path))


def config_from_dict(data: dict, path: str = "<gateway>") -> GatewayConfig:
    top = Table(path, "", data)
    g = _section(top, "gateway")
    host = g.string("host", GatewayConfig.host)
    port = g.integer("port", GatewayConfig.port, min=0)
    store = g.string("store", GatewayConfig.store)
    if "://" not in store and path != "<gateway>":
        store = str((Path(path).parent / store).resolve())
    default_max = g.integer("default_max_tokens", GatewayConfig.default_max_tokens, min=1)
    hub = g.string("hub_api_url", "") or None
    experiment = g.string("experiment", GatewayConfig.experiment)
    flush_rows = g.integer("flush_rows", GatewayConfig.flush_rows, min=1)
    flush_s = g.number("flush_s", GatewayConfig.flush_s, min=0.0, strict_min=True)
    workers = g.integer("workers", GatewayConfig.workers, min=1)
    g.done()
    upstreams = {}
    for t in top.tables("upstreams", []):
        provider = t.string("provider", choices=PROVIDERS)
        upstream = Upstream(provider, t.string("base_url", DEFAULT_BASE_URLS[provider]).rstrip("/"),
                            t.string("key_env", DEFAULT_KEY_ENV[provider]))
        upstreams[provider] = upstreams.get(provider, ()) + (upstream,)
        t.done()
    if not upstreams:
        top.fail("upstreams", "give at least one [[upstreams]] table (provider, base_url, key_env)")
    tables = top.tables("pipeline", [])
    fallback_models = next((_fallback_models(t, upstreams) for t in tables if t.data.get("stage") == "retry"), ())
    route_models = next((_targets(t, "models", upstreams) for t in tables if t.data.get("stage") == "router"), ())
    pipeline = tuple(_stage(t) for t in tables)
    names = [s.stage for s in pipeline]
    for name in set(names):
        if names.count(name) > 1:
            top.fail("pipeline", f"stage {name!r} is listed twice; the gateway runs each stage once")
    config = GatewayConfig(host=host, port=port, store=store, default_max_tokens=default_max, upstreams=upstreams,
                           class_limits=_limits(_section(top, "class")),
                           learner_defaults=_limits(_section(top, "learners")), pipeline=pipeline,
                           fallback_models=fallback_models, route_models=route_models, hub_api_url=hub,
                           experiment=experiment, flush_rows=flush_rows, flush_s=flush_s, workers=workers,
                           path=path)
    top.done()
    return config


def _section(top: Table, key: str) -> Table:
    """An optional table; present but empty (None, from a dict built in Python) reads as absent."""
    t = top.table(key, {})
    return t if t is not None else Table(top.path, key, {})


def _limits(t: Table) -> Limits:
    limits = Limits(daily_usd=t.number("daily_usd", None, min=0.0), total_usd=t.number("total_usd", None, min=0.0),
                    rpm=t.number("rpm", None, min=0.0, strict_min=True))
    t.done()
    return limits


def _fallback_models(t: Table, upstreams: dict) -> tuple[tuple[str, str], ...]:
    """The retry table's gateway-only `fallback_models`; they need `fallback = true`."""
    targets = _targets(t, "fallback_models", upstreams)
    if targets and t.data.get("fallback") is not True:
        t.fail("fallback_models", "falling back to other models needs fallback = true in the same table")
    return targets


def _targets(t: Table, key: str, upstreams: dict) -> tuple[tuple[str, str], ...]:
    """A gateway-only list `key = ["provider/model", ...]`, each priced by genai-prices and with an upstream."""
    raw = t.raw(key, [])
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.count("/") == 1 for x in raw):
        t.fail(key, 'expected a list of "provider/model" strings, e.g. ["anthropic/claude-haiku-4-5"]')
    out = []
    for target in raw:
        provider, model = target.split("/")
        if provider not in PROVIDERS:
            t.fail(key, f"{target!r}: provider expected one of {', '.join(PROVIDERS)}")
        if provider not in upstreams:
            t.fail(key, f"{target!r}: give an [[upstreams]] table for {provider}")
        try:
            model_prices(provider, model)
        except CostlabError as exc:
            t.fail(key, f"{target!r}: {exc}")
        out.append((provider, model))
    return tuple(out)


def _stage(t: Table):
    name = t.string("stage")
    if name == "output_cap":
        cap = OutputCap(max_tokens=t.integer("max_tokens", OutputCap.max_tokens, min=1))
        t.done()
        return cap
    if name not in STAGES:
        t.fail("stage", f"unknown stage {name!r}: the gateway serves {', '.join(LIVE_STAGES)}"
               f"{did_you_mean(name, LIVE_STAGES)}")
    if name not in LIVE_STAGES:
        t.fail("stage", f"{name!r} is simulation-only; the gateway serves {', '.join(LIVE_STAGES)}")
    config = parse_stage(t)
    if name == "budget" and config.action not in ("reject", "warn"):
        t.fail("action", f"{config.action!r} needs the simulator; the gateway's budget does 'reject' or 'warn'")
    if name == "budget" and config.per == "feature":
        t.fail("per", "the gateway's budget is per 'tenant' (learner) or 'all'")
    if name == "router" and config.strategy != "cheapest":
        t.fail("strategy", f"{config.strategy!r} needs the simulator's latency and quality models; "
                           "the gateway's router does 'cheapest'")
    if name == "router" and not t.data.get("models"):
        t.fail("models", 'give the models the router may pick from, e.g. ["openai/gpt-4o-mini", "openai/gpt-4.1-nano"]')
    if name == "cache" and config.policy == "lfu":
        t.fail("policy", "the live cache is 'lru' or 'fifo'")
    if name == "cache" and (config.capacity_tokens or config.dynamic_ttl or config.xfetch_beta):
        t.fail("stage", "the live cache takes policy, capacity, ttl_s, ttl_mode and shared")
    return config
