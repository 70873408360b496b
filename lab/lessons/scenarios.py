"""Scenarios to start from: the repository's TOML files as dicts, and variants of them by dotted path.

A lesson edits a scenario like its TOML file (a dict), or changes a few fields by the paths
`lab.sweep` spells (`pipeline[cache].capacity`), and always gets a validated `Scenario` back;
the file it started from is never modified.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path

from lab.errors import ConfigError
from lab.loader import scenario_from_dict
from lab.scenario import Scenario
from lab.sweep import set_path

#: the source checkout this package sits in (its `scenarios/` folder is the first place looked)
ROOT = Path(__file__).resolve().parents[2]


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


def build(data: Mapping, path: str | Path | None = None) -> Scenario:
    """Validate a scenario dict into a `Scenario` (relative trace paths resolve from `scenarios/`)."""
    folder = scenarios_dir() or Path.cwd()
    where = Path(path) if path is not None else folder / f"{data.get('name', 'lesson')}.toml"
    return scenario_from_dict(copy.deepcopy(dict(data)), path=str(where))


def variant(base, changes: Mapping | None = None, *, pipeline=None, name: str | None = None) -> Scenario:
    """A Scenario made from `base` (a scenario name or dict) with some fields changed.

    `changes` maps dotted paths, as `lab.sweep` spells them, to new values:
    `{"pipeline[cache].capacity": 500, "traffic.arrivals.rate_per_s": 5}`; `pipeline` replaces
    the whole pipeline with a list of stage dicts. The base is never modified.
    """
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


def stale_catalog_dict() -> dict:
    """The catalog scenario with invalidation switched off: a TTL alone decides how stale answers get."""
    data = scenario_dict("catalog-price-updates")
    data["traffic"]["updates"]["rate_per_s"] = 0.3
    data["pipeline"] = [{"stage": "cache", "policy": "lfu", "capacity": 2000, "ttl_s": 60,
                         "invalidate_on_update": False}]
    return data


#: lesson 07's routing scenario: mixed difficulty, the dear model first (the baseline), cheaper ones available
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
#: lesson 07's cascade, cheapest model first
CASCADE_MODELS = ["gemini-2.5-flash-lite", "claude-haiku-4-5", "claude-sonnet-4-5"]

#: lesson 08's budget that binds: 2,000 requests on gpt-4o cost about $13 (600, as CI runs the
#: lesson, about $4), so a $3 daily budget stops many of them and halving it halves the bill again
#: (every re-run lasts less than a simulated day)
BUDGET_SCENARIO = {
    "name": "budget-lesson", "duration_s": 3600,
    "description": "one product on gpt-4o under a daily budget that binds; gpt-4o-mini to downgrade to",
    "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 3.0},
                "input_tokens": {"dist": "lognormal", "median": 900, "sigma": 0.6},
                "output_tokens": {"dist": "lognormal", "median": 350, "sigma": 0.5},
                "difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0},
                "max_tokens": 1024},
    "providers": [{"name": "openai", "model": "gpt-4o", "concurrency": 64},
                  {"name": "openai", "model": "gpt-4o-mini", "concurrency": 64}],
    "pipeline": [{"stage": "budget", "daily_usd": 3.0, "per": "all", "action": "reject",
                  "downgrade_to": "gpt-4o-mini"}],
    "sla": {"p95_ms": 20000},
}

#: lesson 08's tokens-per-minute limit
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


def prompt_cache_ttl_dict(anthropic_ttl: str, rate_per_s: float) -> dict:
    """Lesson 06: Anthropic prompt caching of a 3,000-token system prompt at one request per `1 / rate_per_s` s."""
    return {"name": "prompt-cache-ttl", "requests": 400 if rate_per_s < 0.01 else 3000,
            "traffic": {"arrivals": {"process": "poisson", "rate_per_s": float(rate_per_s)},
                        "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
                        "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.5},
                        "prefix": {"system_tokens": 3000}},
            "providers": [{"name": "anthropic", "model": "claude-sonnet-4-5", "concurrency": 64}],
            "pipeline": [{"stage": "prompt_cache", "rules": "anthropic", "anthropic_ttl": anthropic_ttl}]}
