"""The gateway file: live stages read with the scenario's own fields, simulation-only ones refused in one line,
and hostile input (random config tables, random request bodies) never gets past a clear error."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from lab.errors import CostlabError, ScenarioError
from lab.gateway import Gateway, config_from_dict, load_config
from lab.gateway.config import LIVE_STAGES
from lab.gateway.store import GatewayStore
from lab.stages import STAGES

UPSTREAM = [{"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "key_env": "K"}]


def test_the_pipeline_takes_a_scenarios_fields(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nstore = "g.db"\n[class]\ndaily_usd = 5.0\n[[upstreams]]\nprovider = "openai"\n'
                    '[[pipeline]]\nstage = "cache"\npolicy = "lru"\ncapacity = 100\nttl_s = 60\nshared = true\n'
                    '[[pipeline]]\nstage = "dedup"\n[[pipeline]]\nstage = "budget"\ndaily_usd = 0.2\n'
                    '[[pipeline]]\nstage = "output_cap"\nmax_tokens = 300\n')
    config = load_config(path)
    assert config.store == str(tmp_path / "g.db")
    assert config.stage("cache") == STAGES["cache"].Config(capacity=100, ttl_s=60.0, shared=True)
    assert config.stage("output_cap").max_tokens == 300 and config.class_limits.daily_usd == 5.0
    assert config.upstreams["openai"][0].key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize("stage", sorted(set(STAGES) - set(LIVE_STAGES)))
def test_simulation_only_stages_are_refused_in_one_line(stage):
    with pytest.raises(ScenarioError) as info:
        config_from_dict({"upstreams": UPSTREAM, "pipeline": [{"stage": stage}]})
    message = str(info.value)
    assert "\n" not in message and "pipeline" in message
    assert "simulation-only" in message and "cache, dedup" in message


@pytest.mark.parametrize("table, words", [
    ({"stage": "budget", "daily_usd": 1.0, "action": "downgrade"}, "'reject' or 'warn'"),
    ({"stage": "cache", "ttl_s": -1}, "ttl_s"),
    ({"stage": "cache", "capacity_tokens": 100}, "live cache takes"),
    ({"stage": "output_cap", "max_tokens": 0}, "max_tokens"),
    ({"stage": "cahce"}, "did you mean 'cache'"),
])
def test_bad_stage_fields_name_the_field(table, words):
    with pytest.raises(ScenarioError, match=words):
        config_from_dict({"upstreams": UPSTREAM, "pipeline": [table]})


def test_a_missing_upstream_key_is_one_line_naming_the_variable(tmp_path):
    config = config_from_dict({"gateway": {"store": str(tmp_path / "g.db")}, "upstreams": UPSTREAM})
    with pytest.raises(CostlabError, match="environment variable K is not set"):
        Gateway(config, env={})


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["openai", "cache", "budget", "lru", "dedup", "retry"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["stage", "provider", "ttl_s", "capacity", "daily_usd", "base_url", "port", "x"]), inner,
    max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["gateway", "class", "learners", "upstreams", "pipeline", "extra"]),
                       _values, max_size=5))
def test_random_config_tables_fail_only_with_a_scenario_error(data):
    try:
        config_from_dict(data)
    except ScenarioError as exc:
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    store = GatewayStore(str(tmp_path_factory.mktemp("gw") / "g.db"))
    config = config_from_dict({"upstreams": [{"provider": p, "base_url": "http://127.0.0.1:9", "key_env": "K"}
                                             for p in ("openai", "anthropic", "google")]})
    gateway = Gateway(config, store=store, env={"K": "sk-test"})
    token = store.add_learner("ivy", daily_usd=0.0)           # a zero cap: nothing reaches the (absent) upstream
    with TestClient(gateway.app()) as c:
        yield c, token


_bodies = st.one_of(_values, st.dictionaries(st.sampled_from(
    ["model", "messages", "max_tokens", "max_completion_tokens", "stream", "contents", "system",
     "generationConfig", "stream_options"]), _values, max_size=6))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies, path=st.sampled_from(["/openai/v1/chat/completions", "/anthropic/v1/messages",
                                           "/google/v1beta/models/gemini-2.5-flash:generateContent",
                                           "/google/v1beta/models/x:streamGenerateContent", "/openai/v1/nope"]))
def test_random_request_bodies_get_a_provider_shaped_error_never_a_crash(client, body, path):
    c, token = client
    headers = {"authorization": f"Bearer {token}", "x-api-key": token, "x-goog-api-key": token}
    r = c.post(path, content=json.dumps(body), headers=headers)
    assert r.status_code in (400, 404, 429), (r.status_code, r.text)
    error = r.json()
    assert "error" in error
