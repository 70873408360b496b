"""The fast paths against the SimPy reference, request by request and bit for bit.

`Simulation(engine="simpy")` is the reference: a generator process with a Timeout per
arrival gap, every request through SimPy. The default engine merges arrivals into the event
loop and serves a stage-free run (the baseline) with no events at all. Both must write the
same ledger arrays — queue waits, service times, finish times, statuses, outcomes, attempts,
Retry-After values, costs — on scenarios with rate limits (429 + Retry-After), errors,
outages, flex sheds, retries, a circuit breaker and a router, and on every library scenario.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lab
from lab.buckets import TokenBucket
from lab.providers.mock import _fits_with_room
from lab.sim import Simulation, arrival_clock
from lab.traffic import make_requests

SCENARIOS = sorted(Path(__file__).resolve().parents[1].glob("scenarios/*.toml"))
FIELDS = ("outcome", "provider", "cached_input_tokens", "cache_write_tokens", "t_dispatch_s", "queue_ms",
          "service_ms", "t_done_s", "quality", "stage_flags", "answered_by", "extra_cost_usd", "cost_usd",
          "input_tokens", "output_tokens", "attempts", "status", "overhead_ms")

EXP_1S = {"dist": "exponential", "mean": 1000.0}


def _hostile(pipeline, **provider):
    """Two providers near saturation: published limits, errors, 400s, an outage, slow errors."""
    first = {"name": "openai", "model": "gpt-4o-mini", "concurrency": 8, "latency_ms": EXP_1S,
             "rpm": 600, "tpm": 2_000_000, "error_rate": 0.05, "bad_request_rate": 0.01,
             "error_latency_ms": 150.0, "outages": [{"start_s": 40.0, "end_s": 70.0}], **provider}
    second = {"name": "anthropic", "model": "claude-haiku-4-5", "concurrency": 6, "latency_ms": EXP_1S,
              "itpm": 300_000, "otpm": 200_000, "error_rate": 0.02}
    return lab.scenario_from_dict({
        "name": "hostile", "requests": 3000,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 12.0},
                    "prompts": {"catalog": 500, "popularity": {"dist": "zipf", "alpha": 0.9}},
                    "difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}},
        "providers": [first, second], "pipeline": pipeline})


HOSTILE = {
    "baseline only": _hostile([]),
    "router + retries": _hostile([{"stage": "router", "strategy": "cheapest"},
                                  {"stage": "retry", "max_attempts": 3, "fallback": True}]),
    "cache, dedup, rate limit": _hostile([{"stage": "cache", "capacity": 100}, {"stage": "dedup"},
                                          {"stage": "rate_limit", "rpm": 500}]),
    "flex sheds": _hostile([], service_tier="flex", flex_shed_rate=0.2),
    "constant times tie": lab.scenario_from_dict({   # arrivals and completions at equal instants
        "name": "ties", "requests": 2000,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 8.0}},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 2,
                       "latency_ms": {"dist": "constant", "value": 250.0}, "rpm": 300}],
        "pipeline": [{"stage": "dedup"}]}),
}


def _runs(scenario, seed: int, requests: int | None, optimized: bool):
    stream = make_requests(scenario, np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0]), requests)
    out = []
    for engine in ("simpy", "auto"):
        sim = Simulation(scenario, stream, seed, optimized=optimized, progress=False, engine=engine)
        out.append((sim.run_to_end(), sim))
    return out


def _assert_same(scenario, seed=0, requests=None):
    for optimized in (False, True):
        (ref, ref_sim), (fast, fast_sim) = _runs(scenario, seed, requests, optimized)
        for name in FIELDS:
            a, b = getattr(ref, name), getattr(fast, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (
                f"{scenario.name} optimized={optimized}: column {name} differs at "
                f"{np.flatnonzero(a != b)[:5].tolist()}")
        assert ref_sim.retry_after_s.tobytes() == fast_sim.retry_after_s.tobytes()
        assert ref.provider_calls == fast.provider_calls, f"{scenario.name} optimized={optimized}: provider_calls"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_fast_paths_equal_simpy_on_hostile_scenarios(name):
    """Rate limits, 429s, 5xx, 400s, outages, sheds, retries, a router: the same ledger."""
    _assert_same(HOSTILE[name], seed=3)


def test_hostile_scenarios_exercise_what_they_claim():
    """The equivalence above means something only if the refusals and failures occur."""
    (_, _), (run, _) = _runs(HOSTILE["baseline only"], 3, None, optimized=False)
    statuses = set(np.unique(run.status).tolist())
    assert {200, 400, 429, 500, 503} <= statuses
    assert (run.queue_ms > 0).mean() > 0.1           # the queue is busy, not a free-for-all
    (_, _), (shed, _) = _runs(HOSTILE["flex sheds"], 3, None, optimized=False)
    assert (shed.status == 429).mean() > 0.15


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_fast_paths_equal_simpy_on_library_scenarios(path):
    _assert_same(lab.load_scenario(path), seed=1, requests=3000)


def test_simulate_baseline_is_the_reference_baseline():
    """`simulate` (fast baseline, shared or not) gives the reference's baseline ledger."""
    scenario = HOSTILE["router + retries"]
    result = lab.simulate(scenario, seed=5)
    stream = result.requests
    ref = Simulation(scenario, stream, 5, optimized=False, progress=False, engine="simpy")
    base = ref.run_to_end()
    base.cost_usd = ref.list_price()
    for name in FIELDS:
        assert getattr(result.baseline, name).tobytes() == getattr(base, name).tobytes(), name


def test_unknown_engine_is_refused():
    scenario = HOSTILE["baseline only"]
    stream = make_requests(scenario, np.random.default_rng(0), 10)
    with pytest.raises(ValueError, match="engine 'turbo'"):
        Simulation(scenario, stream, 0, engine="turbo")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e7, allow_nan=False), min_size=0, max_size=60))
def test_arrival_clock_is_simpys_clock(times):
    """`arrival_clock` equals walking `now += t - now` (the reference), whatever the gaps."""
    t = np.sort(np.array(times, dtype=np.float64))
    now, expected = 0.0, []
    for x in t.tolist():
        if x - now > 0:
            now += x - now
        expected.append(now)
    assert arrival_clock(t).tolist() == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1.0, max_value=1e6), st.integers(min_value=1, max_value=80), st.data())
def test_rate_limit_screen_never_passes_a_stream_the_bucket_would_refuse(per_minute, n, data):
    """The vectorized screen may send a stream to the exact walk; it must never wave through a 429."""
    gaps = data.draw(st.lists(st.floats(min_value=0.0, max_value=120.0), min_size=n, max_size=n))
    usage = data.draw(st.lists(st.floats(min_value=0.0, max_value=per_minute * 1.2), min_size=n, max_size=n))
    t, u = np.cumsum(gaps), np.array(usage)
    if not _fits_with_room(TokenBucket(per_minute), t, u):
        return
    bucket = TokenBucket(per_minute)
    for now, amount in zip(t.tolist(), u.tolist()):
        assert bucket.wait_s(amount, now) == 0.0
        bucket.take(amount)
