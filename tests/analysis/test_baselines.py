"""Baselines: the t distribution against scipy, CI coverage, paired seed studies, the named store.

scipy (a dev dependency) is the reference for the t CDF, quantiles and both tests; the
coverage check uses the definition of a 95 % interval (it covers the true mean 95 % of the time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lab
from lab.analysis.baselines import BaselineStore, compare, compare_scenarios, run_metrics, run_seeds
from lab.analysis.stats import mean_ci, paired_difference, welch_difference
from lab.errors import ConfigError


def test_paired_and_welch_tests_match_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(10, 1, 6)
    b = a + rng.normal(-0.4, 0.3, 6)
    d = paired_difference(a, b)
    ref = stats.ttest_rel(b, a)
    lo, hi = ref.confidence_interval(0.95)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (d.ci_low, d.ci_high) == pytest.approx((lo, hi), rel=1e-8)
    w = welch_difference(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False)
    lo, hi = ref.confidence_interval(0.95)
    assert w.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (w.ci_low, w.ci_high) == pytest.approx((lo, hi), rel=1e-8)
    assert w.df == pytest.approx(ref.df, rel=1e-10)


def test_a_95_percent_interval_covers_the_true_mean_95_percent_of_the_time():
    """2,000 samples of 5 from N(0.3, 1): coverage 0.95 +- 3 binomial sd (0.0049 each)."""
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(2000):
        _, lo, hi = mean_ci(rng.normal(0.3, 1.0, 5))
        covered += lo <= 0.3 <= hi
    assert abs(covered / 2000 - 0.95) < 3 * 0.0049


def test_one_sample_each_gives_a_difference_but_no_interval():
    d = paired_difference([1.0], [0.5])
    assert d.mean == -0.5 and np.isnan(d.ci_low) and d.significant is None


@pytest.fixture(scope="module")
def chatbot_seeds():
    return run_seeds("scenarios/support-chatbot.toml", seeds=range(3), requests=1500, progress=False)


def test_optimization_is_a_significant_saving_across_seeds(chatbot_seeds):
    comp = chatbot_seeds.comparison()
    assert comp.paired
    head = comp.headline()
    per_seed = [100 * (1 - r["cost_usd"] / b["cost_usd"])
                for r, b in zip(chatbot_seeds.run_samples, chatbot_seeds.baseline_samples)]
    assert head["reduction_pct"] == pytest.approx(np.mean(per_seed), rel=1e-9)
    lo, hi = head["reduction_pct_ci"]
    assert (lo, hi) == pytest.approx(mean_ci(per_seed)[1:], rel=1e-9)   # the t interval of per-seed reductions
    assert head["significant"] and 0 < lo < np.mean(per_seed) < hi
    table = comp.table()
    assert table.loc["uncached_input_tokens", "better"]                 # prompt caching at work
    assert table.loc["provider_calls", "candidate"] < table.loc["provider_calls", "baseline"]
    strategies = chatbot_seeds.strategy_table()
    assert set(strategies.index) == {"cache", "dedup", "prompt cache"}
    total_saved = np.mean([b["cost_usd"] - r["cost_usd"] for r, b in zip(chatbot_seeds.run_samples,
                                                                           chatbot_seeds.baseline_samples)])
    assert strategies["saved_usd"].sum() == pytest.approx(total_saved, rel=1e-9)


def test_a_scenario_against_itself_is_not_significant():
    sc = lab.load_scenario("scenarios/support-chatbot.toml")
    comp = compare_scenarios(sc, sc, seeds=range(2), requests=500)
    row = comp.table().loc["cost_usd"]
    assert row["change"] == 0.0 and row["p_value"] == 1.0 and not row["significant"]


def test_run_metrics_by_hand():
    led = pd.DataFrame({
        "t_arrival_s": [0.0, 1.0, 2.0, 3.0],
        "provider": pd.Categorical(["openai", "none", "openai", "openai"]),
        "cost_usd": [1.0, 0.0, 2.0, 0.0], "baseline_cost_usd": [1.0, 1.0, 2.0, 1.0],
        "outcome": pd.Categorical(["ok", "cache_hit", "ok", "error"]),
        "input_tokens": [100, 100, 300, 50], "cached_input_tokens": [0, 0, 200, 0], "output_tokens": [10, 10, 30, 0],
        "latency_ms": [1000.0, 2.0, 3000.0, 50.0], "quality": [1.0, 1.0, 1.0, 0.0],
    })
    m = run_metrics(led, sla_ms=2000)
    assert m["provider_calls"] == 2 and m["input_tokens_sent"] == 400 and m["uncached_input_tokens"] == 200
    assert m["output_tokens_generated"] == 40
    assert m["sla_violation_rate"] == 0.5          # the 3,000 ms request and the error
    assert m["cache_hit_rate"] == 0.25 and m["error_rate"] == 0.25 and m["quality_mean"] == 0.75
    assert m["cost_per_1k_requests_usd"] == 750.0


def test_baseline_store_round_trip_and_errors(tmp_path, chatbot_seeds):
    store = BaselineStore(tmp_path / "baselines")
    store.save("no-opt", chatbot_seeds.baseline_samples, note="pipeline off")
    assert store.names() == ["no-opt"]
    loaded = store.load("no-opt")
    assert loaded.note == "pipeline off" and loaded.samples == chatbot_seeds.baseline_samples
    comp = store.compare("no-opt", chatbot_seeds, candidate_name="pipeline on")
    assert comp.paired and comp.headline()["significant"]
    assert comp.table().loc["cost_usd", "change"] == pytest.approx(
        chatbot_seeds.comparison().table().loc["cost_usd", "change"], rel=1e-12)
    with pytest.raises(ConfigError, match="no paths"):
        store.save("../escape", chatbot_seeds.baseline_samples)
    with pytest.raises(ConfigError, match=r"no baseline named 'missing'.*known: no-opt"):
        store.load("missing")


def test_compare_two_ledgers_without_seeds_has_no_interval():
    r = lab.simulate(lab.load_scenario("scenarios/support-chatbot.toml"), seed=0, requests=500, progress=False)
    comp = compare(r.ledger, r.ledger.assign(cost_usd=r.ledger.cost_usd * 2), sla_ms=8000)
    row = comp.table().loc["cost_usd"]
    assert row["change_pct"] == pytest.approx(100.0) and row["test"] == "none" and row["significant"] is None
