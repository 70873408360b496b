"""Small builders shared by tests: a scenario dict with sensible defaults."""

from __future__ import annotations

import copy

import lab

BASE = {
    "name": "t",
    "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 10.0}},
    "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                   "latency_ms": {"dist": "constant", "value": 0.001}}],
}


def scenario(pipeline=(), requests=1000, **overrides):
    """A scenario dict merged with overrides (top-level keys replace, `traffic` merges)."""
    data = copy.deepcopy(BASE)
    if requests is None:
        data.pop("requests", None)           # None: the scenario's own duration (a dict key set to None is an error)
    else:
        data["requests"] = requests
    traffic = overrides.pop("traffic", {})
    data["traffic"].update(traffic)
    data.update(overrides)
    data["pipeline"] = list(pipeline)
    return lab.scenario_from_dict(data)
