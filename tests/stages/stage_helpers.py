"""What the stage tests share: a small scenario run through a pipeline on mock providers."""

from __future__ import annotations

from helpers import scenario

import lab


def sim(pipeline, requests=1000, seed=0, latency_ms=1000.0, **overrides):
    providers = [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                  "latency_ms": {"dist": "constant", "value": latency_ms}}]
    s = scenario(pipeline, requests=requests, providers=providers, **overrides)
    return lab.simulate(s, seed=seed, progress=False)


ONE_PROMPT = {"prompts": {"catalog": 1}}


def run(pipeline, providers, traffic=None, requests=1000, seed=0):
    t = {"arrivals": {"process": "poisson", "rate_per_s": 10.0}}
    t.update(traffic or {})
    s = lab.scenario_from_dict({"name": "s2", "requests": requests, "traffic": t, "providers": providers,
                                "pipeline": pipeline})
    return lab.simulate(s, seed=seed, progress=False)


def mock(model="gpt-4o-mini", name="openai", **kw):
    p = {"name": name, "model": model, "concurrency": 100000, "latency_ms": {"dist": "constant", "value": 1000}}
    p.update(kw)
    return p


THREE = [mock("gpt-4.1-nano"), mock("gpt-4o-mini"), mock("gpt-4o")]


def dashboard(pipeline, requests=2000, sla_ms=None, **provider):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 100.0},
               "input_tokens": {"dist": "constant", "value": 300}, "output_tokens": {"dist": "constant", "value": 50},
               "prefix": {"system_tokens": 1000}}
    data = {"name": "dash", "requests": requests, "traffic": traffic, "pipeline": pipeline,
            "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 1000, "tokens_per_s": 100,
                           "ttft_ms": {"dist": "constant", "value": 300}, **provider}]}
    if sla_ms:
        data["sla"] = {"p95_ms": sla_ms}
    return lab.simulate(lab.scenario_from_dict(data), progress=False)
