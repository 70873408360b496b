"""Digital twin: calibration from the shipped traces and from synthetic traces with known parameters.

Expected numbers come from the traces themselves (lab/data/traces/README.md states them:
Azure conv 5.53 req/s, input p50/p99 1,020/4,142, output 129/601, dispersion of per-second
counts 1.39; Mooncake 36.6 % of blocks reusable) or from the parameters the synthetic traces
were generated with. Dispersion is variance / mean of arrival counts in consecutive 1-second
windows (whole windows only), as the trace README computes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import scenario as make_scenario

import lab
from lab import twin
from lab.dists import draw_ranks, zipf_probabilities
from lab.errors import ConfigError, CostlabError, TraceError
from lab.scenario import Arrivals
from lab.traces import shipped_trace_path
from lab.traffic import arrival_times
from lab.twin.fitting import _weighted_quantile


@pytest.fixture(scope="module")
def azure_validation():
    cal = twin.fit(shipped_trace_path("azure_conv"), "azure")
    table = twin.validate(cal.scenario, cal.source, seeds=5).table.set_index("metric")
    return cal, table


def rel(table, metric):
    return abs(table.loc[metric, "rel_error"])


def test_azure_source_numbers_match_the_trace_readme(azure_validation):
    _, t = azure_validation
    assert t.loc["rate_per_s", "source"] == pytest.approx(5.53, abs=0.005)
    assert t.loc["input_tokens_p50", "source"] == 1020 and t.loc["input_tokens_p99", "source"] == 4142
    assert t.loc["output_tokens_p50", "source"] == 129 and t.loc["output_tokens_p99", "source"] == 601
    assert t.loc["dispersion_1s", "source"] == pytest.approx(1.39, abs=0.005)


def test_azure_twin_reproduces_rate_tokens_within_5pct_and_dispersion_within_25pct(azure_validation):
    cal, t = azure_validation
    for metric in ("rate_per_s", "input_tokens_p50", "input_tokens_p99", "output_tokens_p50", "output_tokens_p99"):
        assert rel(t, metric) <= 0.05, (metric, t.loc[metric].to_dict())
    assert rel(t, "dispersion_1s") <= 0.25, t.loc["dispersion_1s"].to_dict()
    # the per-second dispersion is not Poisson (1.0): the twin must carry the rate profile
    assert cal.scenario.traffic.arrivals.process in ("diurnal", "mmpp")
    assert t.loc["dispersion_1s", "twin"] > 1.1
    assert bool(t["ok"].dropna().all()), t


def test_azure_twin_is_a_scenario_that_runs(azure_validation):
    cal, _ = azure_validation
    r = lab.simulate(cal.scenario, seed=1, requests=3000, progress=False)
    assert r.summary()["requests"] == 3000
    # a scenario TOML written from the twin reads back into the same traffic
    import tomllib

    from lab.twin import scenario_toml as dumps

    again = lab.scenario_from_dict(tomllib.loads(dumps(cal.scenario_dict, header=cal.story())))
    assert again.traffic == cal.scenario.traffic and again.providers == cal.scenario.providers


def write_csv(path, t, rng, prompts=None, median_in=800.0, sigma_in=0.6, median_out=200.0, sigma_out=0.5):
    """A generic costlab CSV with lognormal token counts (and an optional prompt column)."""
    inp = np.maximum(np.rint(median_in * np.exp(sigma_in * rng.standard_normal(len(t)))), 1).astype(int)
    out = np.maximum(np.rint(median_out * np.exp(sigma_out * rng.standard_normal(len(t)))), 1).astype(int)
    df = pd.DataFrame({"t_arrival_s": np.round(t, 6), "input_tokens": inp, "output_tokens": out})
    if prompts is not None:
        df["prompt"] = [f"question {k}" for k in prompts]
    df.to_csv(path, index=False)
    return path


def test_synthetic_poisson_lognormal_trace_is_recovered(tmp_path):
    # 5 req/s for an hour: ~18,000 arrivals, so the rate is known to ~0.75 % (1 sd)
    rng = np.random.default_rng(11)
    t = arrival_times(rng, Arrivals("poisson", rate_per_s=5.0), n=None, duration_s=3600.0)
    cal = twin.fit(write_csv(tmp_path / "p.csv", t, rng))
    a = cal.scenario.traffic.arrivals
    assert a.process == "poisson"
    assert a.rate_per_s == pytest.approx(5.0, rel=0.03)
    tin, tout = cal.scenario.traffic.input_tokens, cal.scenario.traffic.output_tokens
    assert tin.dist == "lognormal" and tout.dist == "lognormal"
    assert tin.median == pytest.approx(800, rel=0.03) and tin.sigma == pytest.approx(0.6, rel=0.03)
    assert tout.median == pytest.approx(200, rel=0.03) and tout.sigma == pytest.approx(0.5, rel=0.03)
    assert cal.scenario.traffic.prompts.catalog == 0     # no prompt column: every request unique


def test_synthetic_mmpp_trace_with_zipf_prompts_is_recovered(tmp_path):
    # Two hours of a two-state MMPP (20 req/s for ~10 s, 2 req/s for ~30 s: about 180 cycles).
    # Over 20 seeds the moment fit's rates were within 4 % and its mean state durations within
    # 22 % of the truth, with no bias; the bounds below leave room for that spread.
    rng = np.random.default_rng(3)
    truth = Arrivals("mmpp", rate_high_per_s=20.0, rate_low_per_s=2.0, mean_high_s=10.0, mean_low_s=30.0)
    t = arrival_times(rng, truth, n=None, duration_s=7200.0)
    prompts = draw_ranks(rng, zipf_probabilities(5000, 0.8), len(t))
    cal = twin.fit(write_csv(tmp_path / "m.csv", t, rng, prompts))
    a = cal.scenario.traffic.arrivals
    assert a.process == "mmpp", cal.notes[0]
    assert a.rate_high_per_s == pytest.approx(20.0, rel=0.10)
    assert a.rate_low_per_s == pytest.approx(2.0, rel=0.15)
    assert a.mean_high_s == pytest.approx(10.0, rel=0.35)
    assert a.mean_low_s == pytest.approx(30.0, rel=0.35)
    p = cal.scenario.traffic.prompts
    assert p.catalog == pytest.approx(5000, rel=0.10)
    assert p.popularity.alpha == pytest.approx(0.8, abs=0.1)
    # and the twin repeats prompts as often as the source did
    v = twin.validate(cal.scenario, cal.source, seeds=3).table.set_index("metric")
    assert rel(v, "duplicate_rate") <= 0.02
    assert rel(v, "dispersion_1s") <= 0.25 and rel(v, "dispersion_60s") <= 0.25


def test_mooncake_twin_carries_prefix_reuse_and_duplicates():
    cal = twin.fit(shipped_trace_path("mooncake_conversation"), "mooncake")
    prefix = cal.scenario.traffic.prefix
    assert prefix is not None and prefix.block_tokens == 512 and prefix.system_tokens % 512 == 0
    assert prefix.variants > 1
    assert any("not represented" in n for n in cal.notes)
    v = twin.validate(cal.scenario, cal.source, seeds=2).table.set_index("metric")
    assert v.loc["prefix_reuse_share", "source"] == pytest.approx(0.366, abs=0.001)   # trace README
    assert rel(v, "prefix_reuse_share") <= 0.10
    assert v.loc["duplicate_rate", "source"] == pytest.approx(0.0098, abs=0.0002)     # identical hash_ids
    for metric in ("input_tokens_p50", "input_tokens_p99", "output_tokens_p50", "output_tokens_p99"):
        assert rel(v, metric) <= 0.05, metric
    # the 3-second clock: per-second dispersion is shown but not judged
    assert pd.isna(v.loc["dispersion_1s", "tolerance"]) and not pd.isna(v.loc["dispersion_3s", "tolerance"])


def test_token_fit_falls_back_to_empirical_that_keeps_percentiles():
    # a two-humped mixture no lognormal fits: the empirical grid must keep p50/p90/p99 within 2 %
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(400, 20, 6000), rng.normal(3000, 300, 4000)]).round()
    dist, note = twin.fit_tokens(x)
    assert dist["dist"] == "empirical", note
    values, weights = np.array(dist["values"], float), np.array(dist["weights"])
    for q in (50, 90, 99):
        got = _weighted_quantile(values, weights, q / 100)
        assert got == pytest.approx(np.percentile(x, q), rel=0.02)


def test_dispersion_index_of_known_counts():
    # two arrivals every other second: per-second counts 2, 0, 2, 0 ... (dispersion = their
    # sample variance / mean); per 2-second window always 2 (dispersion 0)
    t = np.repeat(np.arange(0, 100, 2, dtype=float), 2) + 0.5
    counts = np.array([2, 0] * 50)[:99]
    assert twin.dispersion_index(t, 1.0, 99.0) == pytest.approx(counts.var(ddof=1) / counts.mean())
    assert twin.dispersion_index(t, 2.0, 100.0) == pytest.approx(0.0)


def test_ledger_and_result_sources_use_the_served_model():
    s = make_scenario(requests=600, traffic={"arrivals": {"process": "poisson", "rate_per_s": 5.0},
                                             "prompts": {"catalog": 50}})
    result = lab.simulate(s.replace(pipeline=twin.policy_pipeline([{"stage": "cache"}], "c")), seed=0, progress=False)
    cal = twin.fit(result)
    prov = cal.scenario.providers[0]
    assert (prov.name, prov.model) == ("openai", "gpt-4o-mini")
    assert any("lower bound" in n for n in cal.notes)      # ledgers have no prompt column
    cal_df = twin.fit(result.ledger)
    assert cal_df.scenario.traffic.arrivals.rate_per_s == pytest.approx(cal.scenario.traffic.arrivals.rate_per_s)


def test_bad_sources_give_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="live cassette is not supported yet"):
        twin.calibrate(tmp_path / "calls.jsonl", format="cassette")
    with pytest.raises(ConfigError, match="missing output_tokens"):
        twin.calibrate(pd.DataFrame({"t_arrival_s": [0.0, 1.0], "input_tokens": [1, 2]}))
    with pytest.raises(TraceError, match="no such trace file"):
        twin.calibrate(tmp_path / "nope.csv")
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("t_arrival_s,input_tokens,output_tokens\n0,1,1\n1,2,2\n")
    with pytest.raises(TraceError, match="at least 10 requests"):
        twin.calibrate(tiny)
    with pytest.raises(ConfigError, match="expected a trace path"):
        twin.calibrate(42)
    with pytest.raises(CostlabError, match="unknown stage"):
        twin.what_if(make_scenario(), {"x": [{"stage": "cahce"}]}, seeds=1)


# --------------------------------------------------------------------------- what-if and recommend


def one_prompt_scenario():
    """Every request asks one question in one of 4 wordings; the provider answers in a microsecond."""
    return make_scenario(requests=400, traffic={"prompts": {"catalog": 1, "paraphrases": 4},
                                                "input_tokens": {"dist": "constant", "value": 1000},
                                                "output_tokens": {"dist": "constant", "value": 100}},
                         sla={"p95_ms": 500})


def test_what_if_and_recommend_rank_by_cost_under_sla_and_quality():
    s = one_prompt_scenario()
    policies = {
        "cache": [{"stage": "cache"}],
        # a cache whose hits take 2 s: as cheap as "cache" but p95 misses the 500 ms SLA
        "slow cache": [{"stage": "cache", "hit_latency_ms": 2000}],
        # answers every wording from the first one fetched, but every non-exact hit is wrong
        "semantic": [{"stage": "semantic_cache", "threshold": 0.5, "wrong_hit_rate": [[0.5, 1.0], [0.9, 1.0]]}],
    }
    w = twin.what_if(s, policies, seeds=3)
    t = w.table.set_index("policy")
    assert list(t.index) == ["none", "cache", "slow cache", "semantic"]
    # an instant provider and 4 wordings: the exact cache pays for each wording once (4 of 400
    # requests; every request has the same tokens, so 1/100 of the baseline), the semantic
    # cache only for the first request (1/400), at the price of wrong answers
    base = t.loc["none", "cost_usd_per_day"]
    assert t.loc["cache", "cost_usd_per_day"] == pytest.approx(base / 100, rel=1e-9)
    assert t.loc["semantic", "cost_usd_per_day"] == pytest.approx(base / 400, rel=1e-9)
    assert t.loc["semantic", "quality"] < 0.5
    assert t.loc["slow cache", "p95_ms"] > 500
    rec = twin.recommend(w, quality_floor=0.99)
    ranked = rec.table
    assert ranked.iloc[0]["policy"] == "cache" and bool(ranked.iloc[0]["feasible"])
    assert not ranked.set_index("policy").loc["slow cache", "feasible"]
    text = " ".join(rec.notes)
    assert "Recommended: 'cache'" in text and "misses the SLA" in text
    assert "'semantic' would be cheaper" in text and "below the quality floor" in text
    html = rec._repr_html_()
    assert "<table>" in html and "Recommended" in html


def test_recommend_says_so_when_nothing_is_feasible():
    s = one_prompt_scenario()
    w = twin.what_if(s, {"slow": [{"stage": "cache", "hit_latency_ms": 2000}]}, seeds=1)
    rec = twin.recommend(w, sla_p95_ms=0.0001)
    assert "No policy meets both" in rec.notes[0]


# --------------------------------------------------------------------------- the command


def test_costlab_twin_prints_the_table_and_writes_a_scenario_that_runs(tmp_path, capsys):
    from lab.cli import main

    rng = np.random.default_rng(2)
    t = arrival_times(rng, Arrivals("poisson", rate_per_s=2.0), n=None, duration_s=1200.0)
    trace = write_csv(tmp_path / "mine.csv", t, rng)
    out = tmp_path / "twin" / "mine.toml"
    assert main(["twin", str(trace), "--out", str(out), "--seeds", "2", "--model", "anthropic/claude-haiku-4-5",
                 "--sla-p95-ms", "4000"]) == 0
    printed = capsys.readouterr().out
    assert "Twin vs source" in printed and "rate_per_s" in printed and "dispersion_1s" in printed
    scenario = lab.load_scenario(out)
    assert scenario.providers[0].model == "claude-haiku-4-5" and scenario.sla.p95_ms == 4000
    assert out.read_text().startswith("# Digital twin of")
    assert main(["run", str(out), "--requests", "300"]) == 0


def test_costlab_twin_user_errors_exit_2(tmp_path, capsys):
    from lab.cli import main

    assert main(["twin", str(tmp_path / "missing.csv")]) == 2
    assert "no such trace file" in capsys.readouterr().err
    assert main(["twin", str(shipped_trace_path("azure_conv")), "--model", "gpt-4o-mini"]) == 2
    assert "expected PROVIDER/MODEL" in capsys.readouterr().err
    assert main(["twin", str(shipped_trace_path("azure_conv")), "--seeds", "0"]) == 2
