"""Baselines shared between runs that differ only in their pipeline (lab.sim.BASELINES).

Sharing must be invisible: a shared baseline gives the summary and ledger a fresh one gives,
bit for bit; it is reused only for the same traffic, providers, size and seed; live calls
are never shared; and nothing a Result's user does to its ledger reaches another Result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lab
from lab.sim import BASELINES, BaselineCache, baseline_key, make_baseline
from lab.sweep import _baseline_groups, apply_point, grid_points, scenario_source
from tests.helpers import scenario

PIPELINES = [[], [{"stage": "cache", "capacity": 50}], [{"stage": "dedup"}, {"stage": "cache", "capacity": 10}]]


def _scenario(pipeline=(), rate=40.0):
    return scenario(pipeline, requests=2000, traffic={
        "arrivals": {"process": "poisson", "rate_per_s": rate},
        "prompts": {"catalog": 200, "popularity": {"dist": "zipf", "alpha": 1.0}}})


def test_shared_baseline_gives_the_fresh_numbers():
    BASELINES.clear()
    shared = [lab.simulate(_scenario(p), seed=2) for p in PIPELINES]
    assert (BASELINES.misses, BASELINES.hits) == (1, len(PIPELINES) - 1)
    with BASELINES.disabled():
        fresh = [lab.simulate(_scenario(p), seed=2) for p in PIPELINES]
    assert BASELINES.misses == 1 + len(PIPELINES)
    for a, b in zip(shared, fresh):
        assert a.summary() == b.summary()
        assert a.ledger.equals(b.ledger)


def test_key_follows_traffic_providers_size_and_seed_not_pipeline():
    base = baseline_key(_scenario(), 0, None)
    assert baseline_key(_scenario(PIPELINES[1]), 0, None) == base
    assert baseline_key(_scenario().replace(name="other"), 0, None) == base
    assert baseline_key(_scenario(), 1, None) != base
    assert baseline_key(_scenario(), 0, 500) != base
    assert baseline_key(_scenario(rate=41.0), 0, None) != base
    faster = lab.scenario_from_dict({**_dict(), "providers": [{"name": "openai", "model": "gpt-4o-mini",
                                                                "concurrency": 3}]})
    assert baseline_key(faster, 0, None) != baseline_key(lab.scenario_from_dict(_dict()), 0, None)


def _dict():
    return {"name": "d", "requests": 100, "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 5.0}},
            "providers": [{"name": "openai", "model": "gpt-4o-mini"}]}


def test_live_providers_are_never_shared():
    live = lab.scenario_from_dict({**_dict(), "providers": [{"name": "openai", "model": "gpt-4o-mini",
                                                             "kind": "replay", "cassette": "x.jsonl",
                                                             "budget_usd": 0.5}]})
    assert baseline_key(live, 0, None) is None


def test_a_given_baseline_must_match():
    baseline = make_baseline(_scenario(), seed=0)
    assert lab.simulate(_scenario(PIPELINES[1]), seed=0, baseline=baseline).summary()["requests"] == 2000
    keyed = BaselineCache().get(_scenario(), seed=0)
    with pytest.raises(ValueError, match="other traffic"):
        lab.simulate(_scenario(), seed=1, baseline=keyed)


def test_editing_one_ledger_leaves_the_shared_baseline_alone():
    BASELINES.clear()
    first = lab.simulate(_scenario(PIPELINES[1]), seed=4)
    ledger = first.ledger
    ledger.loc[:, "baseline_cost_usd"] = 0.0
    ledger.loc[:, "t_arrival_s"] = -1.0
    second = lab.simulate(_scenario(PIPELINES[2]), seed=4)
    assert second.requests is first.requests           # shared
    assert (second.ledger["t_arrival_s"] >= 0).all() and second.ledger["baseline_cost_usd"].sum() > 0
    with pytest.raises(ValueError):
        second.requests.t_arrival_s[0] = 5.0             # the shared stream is read-only


def test_cache_is_bounded():
    cache = BaselineCache(max_requests=3000, max_entries=2)
    for seed in range(4):
        cache.get(_scenario(), seed=seed)
    assert len(cache.entries) == 1                       # 2 x 2000 rows would exceed 3000
    assert sum(len(b.requests) for b in cache.entries.values()) <= 3000
    tiny = BaselineCache(max_requests=100)
    tiny.get(_scenario(), seed=0)
    assert not tiny.entries                              # larger than the whole budget: not kept
    assert np.all(tiny.get(_scenario(), seed=0).run.outcome >= 0)


def test_sweep_sends_points_sharing_a_baseline_to_one_worker():
    """Pipeline fields share a baseline; traffic fields do not: one task per (traffic, seed)."""
    source = scenario_source(str(Path(__file__).resolve().parents[1] / "scenarios" / "support-chatbot.toml"))
    grid = {"pipeline[cache].capacity": [100, 1000, 10000], "traffic.arrivals.rate_per_s": [10.0, 40.0]}
    datas = [apply_point(source.data, p) for p in grid_points(source, grid)]
    groups = _baseline_groups(datas, [0, 1, 2, 3], None, source.path)
    assert len(groups) == 2 * 4
    assert sorted(len(ks) for _, ks in groups) == [3] * 8
    assert sorted(k for _, ks in groups for k in ks) == sorted(list(range(6)) * 4)
