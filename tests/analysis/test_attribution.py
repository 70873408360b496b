"""Attribution: every breakdown partitions the bill; strategy savings add up to the total saving.

The reference for savings per stage is the simulator's own `summary()["by_stage"]`, computed
from its internal arrays by each stage's `saved_usd`; the ledger attribution is computed
independently from the ledger columns alone, so agreement checks both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lab
from lab.analysis.attribution import attribute, responsible_stages, savings_by_strategy, savings_usd
from lab.errors import ConfigError


def run(pipeline, providers=None, traffic=None, requests=2000, seed=0):
    t = {"arrivals": {"process": "poisson", "rate_per_s": 10.0}}
    t.update(traffic or {})
    providers = providers or [mock()]
    s = lab.scenario_from_dict({"name": "attr", "requests": requests, "traffic": t, "providers": providers,
                                "pipeline": pipeline})
    return lab.simulate(s, seed=seed, progress=False)


def mock(model="gpt-4o-mini", **kw):
    p = {"name": "openai", "model": model, "concurrency": 100000, "latency_ms": {"dist": "constant", "value": 500}}
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def chatbot():
    """support-chatbot: cache + dedup + prompt cache, two tenants (3,000 requests)."""
    return lab.simulate(lab.load_scenario("scenarios/support-chatbot.toml"), seed=0, requests=3000, progress=False)


@pytest.mark.parametrize("by", ["tenant", "feature", "model", "provider", "outcome", ["tenant", "model"], "team"])
def test_every_breakdown_sums_to_the_ledger_totals(chatbot, by):
    led = chatbot.ledger
    table = attribute(led, by, teams={"retail": "commerce"})
    assert table["requests"].sum() == len(led)
    assert table["cost_usd"].sum() == pytest.approx(led.cost_usd.sum(), rel=1e-12)
    assert table["baseline_cost_usd"].sum() == pytest.approx(led.baseline_cost_usd.sum(), rel=1e-12)
    assert table["saved_usd"].sum() == pytest.approx(led.baseline_cost_usd.sum() - led.cost_usd.sum(), rel=1e-12)
    assert table["input_tokens"].sum() == led.input_tokens.sum()
    assert table["cost_share_pct"].sum() == pytest.approx(100.0)
    assert table["provider_calls"].sum() == chatbot.summary()["provider_calls"]


def test_team_mapping_groups_tenants_and_marks_the_rest(chatbot):
    led = chatbot.ledger
    table = attribute(led, "team", teams={"retail": "commerce"})
    assert set(table.index) == {"commerce", "unassigned"}
    assert table.loc["commerce", "requests"] == (led.tenant == "retail").sum()
    both = attribute(led, "team", teams={"retail": "shop", "travel": "shop"})
    assert list(both.index) == ["shop"]
    with pytest.raises(ConfigError, match="tenant -> team"):
        attribute(led, "team")
    with pytest.raises(ConfigError, match="none of the tenants"):
        attribute(led, "team", teams={"nobody": "x"})
    with pytest.raises(ConfigError, match="did you mean 'tenant'"):
        attribute(led, "tenants")


def test_strategy_savings_add_up_and_match_the_simulators_own_by_stage(chatbot):
    s = chatbot.summary()
    table = savings_by_strategy(chatbot.ledger, by="stage")
    total = s["baseline_cost_usd"] - s["cost_usd"]
    assert table["saved_usd"].sum() == pytest.approx(total, rel=1e-12)
    for stage, v in s["by_stage"].items():
        assert table.loc[stage, "saved_usd"] == pytest.approx(v["cost_saved_usd"], rel=1e-9, abs=1e-12)
    strategies = savings_by_strategy(chatbot.ledger)
    assert list(strategies.index[:3]) == ["cache", "dedup", "prompt cache"]     # pipeline order
    assert strategies["share_pct"].sum() == pytest.approx(100.0)
    # cache hits are claimed by the cache, followers by dedup: requests match the outcomes
    assert strategies.loc["cache", "requests"] == (chatbot.ledger.outcome == "cache_hit").sum()
    assert strategies.loc["dedup", "requests"] == (chatbot.ledger.outcome == "deduplicated").sum()


DIFFICULTY = {"difficulty": {"dist": "uniform", "low": 0.0, "high": 1.0}}
PIPELINES = {
    # a router picks another model and the prompt cache discounts it: the saving is split by price
    "router+prompt_cache": ([{"stage": "router", "strategy": "cheapest"}, {"stage": "prompt_cache", "rules": "ideal"}],
                            [mock("gpt-4o"), mock("gpt-4.1-nano"), mock()],
                            {**DIFFICULTY, "min_quality": 0.6, "prefix": {"system_tokens": 1500}}),
    # a cascade saves on rows it never flags (kept by the cheap model)
    "cascade+prompt_cache": ([{"stage": "cascade", "models": ["gpt-4.1-nano", "gpt-4o"]},
                              {"stage": "prompt_cache", "rules": "ideal"}],
                             [mock("gpt-4.1-nano"), mock("gpt-4o")], {**DIFFICULTY, "prefix": {"system_tokens": 1500}}),
    "budget downgrade": ([{"stage": "budget", "daily_usd": 0.02, "per": "all", "action": "downgrade"}],
                         [mock("gpt-4o"), mock()], {}),
    "cache+budget reject": ([{"stage": "cache"}, {"stage": "budget", "daily_usd": 0.05, "per": "tenant",
                                                  "action": "reject"}], None, {"prompts": {"catalog": 300}}),
    "batch api": ([{"stage": "batch_api", "share": 0.5}], None, {}),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_attribution_matches_by_stage_for_other_strategies(name):
    pipeline, providers, traffic = PIPELINES[name]
    r = run(pipeline, providers, traffic)
    s = r.summary()
    table = savings_by_strategy(r.ledger, by="stage")
    assert table["saved_usd"].sum() == pytest.approx(s["baseline_cost_usd"] - s["cost_usd"], rel=1e-9, abs=1e-12)
    for stage, v in s["by_stage"].items():
        assert table.loc[stage, "saved_usd"] == pytest.approx(v["cost_saved_usd"], rel=1e-9, abs=1e-9), stage


def test_retries_save_nothing_and_failures_are_not_served():
    """The baseline bills every request at list price (lab.sim.Simulation.list_price), so retries
    that turn 30 % errors into answers save nothing; what is left unbilled is the few requests that
    still failed after five attempts, which the attribution reports as "not served"."""
    r = run([{"stage": "retry", "max_attempts": 5, "base_ms": 10}], [mock(error_rate=0.3)])
    s = r.summary()
    table = savings_by_strategy(r.ledger, by="stage")
    total = s["baseline_cost_usd"] - s["cost_usd"]
    assert total >= 0
    assert table["saved_usd"].sum() == pytest.approx(total, rel=1e-12, abs=1e-12)
    assert table.loc["retry", "saved_usd"] == pytest.approx(0.0, abs=1e-12)
    unserved = r.ledger[r.ledger.outcome == "error"].baseline_cost_usd.sum()
    if unserved:
        assert table.loc["not served", "saved_usd"] == pytest.approx(unserved, rel=1e-12)


def test_a_hand_made_ledger_splits_as_the_rules_say():
    """Five rows whose owners follow from the outcome and flags (see lab.analysis.attribution)."""
    led = pd.DataFrame({
        "t_arrival_s": [0.0, 1, 2, 3, 4],
        "cost_usd": [0.0, 0.0, 1.0, 0.0, 2.5],
        "baseline_cost_usd": [1.0, 2.0, 1.0, 4.0, 2.0],
        "outcome": pd.Categorical(["cache_hit", "deduplicated", "ok", "error", "ok"]),
        "stage_cache": [True, False, False, False, False],
        "stage_dedup": [False, True, False, False, False],
    })
    resp = responsible_stages(led)
    assert list(resp["stage"]) == ["cache", "dedup", "none", "not served", "other"]
    np.testing.assert_allclose(resp["saved_usd"], [1.0, 2.0, 0.0, 4.0, -0.5])
    assert savings_usd(led).sum() == pytest.approx(resp["saved_usd"].sum())
