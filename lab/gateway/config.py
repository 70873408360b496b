"""The gateway's TOML file: where to listen, the upstreams and their key variables, the class's limits, the pipeline.

```toml
[gateway]
host = "127.0.0.1"
port = 8780
store = "gateway.db"            # SQLite file (relative to this file) or postgresql://...
default_max_tokens = 1024       # sent upstream when a request gives none, so its worst case is bounded
experiment = "gateway"          # the experiment whose recorded run holds every call ("" records none)
flush_rows = 500                # copy settled rows into that run every this many rows...
flush_s = 5.0                   # ...or seconds, and on shutdown

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
```

Stages that make sense on live traffic are `cache`, `dedup`, `rate_limit`, `budget`,
`retry` and the gateway's own `output_cap`; any other stage is refused in one line. Several
`[[upstreams]]` of one provider are tried in order when `retry` has `fallback = true`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lab.config import Table, did_you_mean
from lab.errors import ScenarioError
from lab.pricing import PROVIDERS
from lab.stages import STAGES, parse_stage

#: stages the gateway serves live; the rest model the world or need the simulator's clock
LIVE_STAGES = ("cache", "dedup", "rate_limit", "budget", "retry", "output_cap")
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
    hub_api_url: str | None = None       # JupyterHub's API: learners may use their hub token
    experiment: str = "gateway"          # its recorded run in the experiment store (the same database)
    flush_rows: int = 500
    flush_s: float = 5.0
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
    pipeline = tuple(_stage(t) for t in top.tables("pipeline", []))
    names = [s.stage for s in pipeline]
    for name in set(names):
        if names.count(name) > 1:
            top.fail("pipeline", f"stage {name!r} is listed twice; the gateway runs each stage once")
    config = GatewayConfig(host=host, port=port, store=store, default_max_tokens=default_max, upstreams=upstreams,
                           class_limits=_limits(_section(top, "class")),
                           learner_defaults=_limits(_section(top, "learners")), pipeline=pipeline,
                           hub_api_url=hub, experiment=experiment, flush_rows=flush_rows, flush_s=flush_s,
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
    if name == "cache" and config.policy == "lfu":
        t.fail("policy", "the live cache is 'lru' or 'fifo'")
    if name == "cache" and (config.capacity_tokens or config.dynamic_ttl or config.xfetch_beta):
        t.fail("stage", "the live cache takes policy, capacity, ttl_s, ttl_mode and shared")
    return config
