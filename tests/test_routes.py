"""[[routes]]: per-route pipelines over named, shared stages; and the peak cost per minute."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lab

PROVIDERS = [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
              "latency_ms": {"dist": "constant", "value": 1000}}]


def gateway(routes, pipeline=None, requests=4000, **traffic):
    t = {"arrivals": {"process": "poisson", "rate_per_s": 50.0}, "prompts": {"catalog": 50},
         "features": [{"name": "search"}, {"name": "chat"}, {"name": "admin"}],
         "priorities": {"high": 0.25, "normal": 0.75}, **traffic}
    pipeline = pipeline or [{"stage": "cache", "name": "responses", "shared": True}, {"stage": "dedup"},
                            {"stage": "compress", "max_output_tokens": 50}]
    return lab.scenario_from_dict({"name": "gw", "requests": requests, "traffic": t, "providers": PROVIDERS,
                                   "pipeline": pipeline, "routes": routes})


ROUTES = [{"name": "urgent", "priority": "high", "stages": ["dedup"]},
          {"name": "search", "feature": "search", "stages": ["responses"]},
          {"name": "chat", "feature": ["chat"], "stages": ["responses", "compress"]}]


def test_each_request_meets_only_its_routes_stages_and_a_shared_stage_serves_several_routes():
    r = lab.simulate(gateway(ROUTES), progress=False)
    led = r.ledger
    high, search = led.priority == "high", (led.feature == "search") & (led.priority != "high")
    chat, admin = (led.feature == "chat") & (led.priority != "high"), (led.feature == "admin") & (led.priority != "high")
    assert not led.stage_cache[high | admin].any() and not led.stage_compress[high | search | admin].any()
    assert not led.stage_dedup[~high].any()
    assert (led.outcome[admin] == "ok").all()                        # no route: no stage, full price
    assert (led.cost_usd[admin] == led.baseline_cost_usd[admin]).all()
    assert (led.output_tokens[chat & (led.outcome == "ok")] <= 50).all()    # every chat call is capped
    assert (led.output_tokens[search & (led.outcome == "ok")] > 50).any()
    # one store for both routes: hits on search and on chat, from 50 prompts, far more than 50 misses each
    hits = led.outcome == "cache_hit"
    assert hits[search].sum() > 0 and hits[chat].sum() > 0
    assert r.summary()["by_stage"]["cache"]["misses"] < 2 * 50 + 60   # each prompt missed ~once per 1 s fetch


def test_routes_name_their_stages_and_keep_pipeline_order():
    with pytest.raises(lab.ScenarioError, match="no \\[\\[pipeline\\]\\] stage is named 'cache'"):
        gateway([{"stages": ["cache"]}])
    with pytest.raises(lab.ScenarioError, match="in \\[\\[pipeline\\]\\] order"):
        gateway([{"stages": ["compress", "responses"]}])
    with pytest.raises(lab.ScenarioError, match="unknown feature 'serch'"):
        gateway([{"feature": "serch", "stages": ["dedup"]}])


def test_without_routes_the_pipeline_is_the_same_as_before():
    plain = gateway([])
    everything = gateway([{"stages": ["responses", "dedup", "compress"]}])
    a, b = lab.simulate(plain, progress=False).summary(), lab.simulate(everything, progress=False).summary()
    assert a == {**b, "scenario": a["scenario"]}


def test_peak_cost_per_minute_is_the_dearest_arrival_minute():
    """Constant tokens at a constant price: the dearest minute is the busiest minute times the price."""
    s = gateway([], pipeline=[{"stage": "dedup"}], requests=20_000, input_tokens={"dist": "constant", "value": 1000},
                output_tokens={"dist": "constant", "value": 100}, prompts={"catalog": 0})
    r = lab.simulate(s, progress=False)
    price = 1000 * 0.15e-6 + 100 * 0.6e-6                        # gpt-4o-mini, $0.15 / $0.60 per million
    busiest = np.bincount((r.ledger.t_arrival_s // 60).astype(int)).max()
    assert r.summary()["peak_cost_per_minute_usd"] == pytest.approx(busiest * price, rel=1e-9)
    # a 50/s Poisson minute: 3,000 ± 55; the busiest of seven is within 4 sd of the mean
    assert 3000 <= busiest <= 3000 + 4 * 55


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=8),
                   st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3),
                   st.sampled_from(["search", "chat", "high", "responses", "dedup", "compress", "admin"]),
                   st.lists(st.sampled_from(["responses", "dedup", "compress", "search", "low"]), max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["name", "feature", "tenant", "priority", "stages", "match"]),
                                VALUES, max_size=4), max_size=3),
       st.dictionaries(st.sampled_from(["turns", "think_time_s", "shared_prefix_tokens", "history", "users"]),
                       st.one_of(VALUES, st.fixed_dictionaries({"dist": st.sampled_from(["constant", "zipf", "x"]),
                                                                "value": st.integers(-2, 9)})), max_size=3))
def test_any_routes_and_sessions_tables_load_or_fail_with_one_scenario_error(routes, sessions):
    try:
        s = gateway(routes, sessions=sessions, requests=50)
    except lab.ScenarioError as exc:
        assert str(exc).count("\n") == 0
        return
    lab.simulate(s, progress=False)      # what loads, runs
