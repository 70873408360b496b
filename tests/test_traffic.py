"""Traffic generation: arrival processes, Zipf prompts, token lengths, trace replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lab
from lab.cli import main
from lab.dists import zipf_probabilities
from lab.traces import shipped_trace_path
from lab.traffic import arrival_times, diurnal_profile, make_requests, mean_rate_per_s


def stream(traffic, requests=None, duration_s=None, seed=0):
    data = {"name": "t", "traffic": traffic,
            "providers": [{"name": "openai", "model": "gpt-4o-mini"}]}
    if requests:
        data["requests"] = requests
    if duration_s:
        data["duration_s"] = duration_s
    s = lab.scenario_from_dict(data)
    return make_requests(s, np.random.default_rng(seed))


def dispersion(times, bucket_s=1.0):
    counts = np.bincount((times // bucket_s).astype(int))
    return counts.var() / counts.mean()


def test_poisson_rate_and_exact_count():
    req = stream({"arrivals": {"process": "poisson", "rate_per_s": 20.0}}, duration_s=5000)
    assert len(req) / 5000 == pytest.approx(20.0, rel=0.02)       # sd of the count is sqrt(1e5): 0.3 %
    assert dispersion(req.t_arrival_s) == pytest.approx(1.0, abs=0.05)
    assert len(stream({"arrivals": {"process": "poisson", "rate_per_s": 20.0}}, requests=1234)) == 1234


def test_diurnal_follows_its_profile():
    profile = [1.0] * 12 + [3.0] * 12
    req = stream({"arrivals": {"process": "diurnal", "rate_per_s": 2.0, "profile": profile}}, duration_s=86400)
    hours = (req.t_arrival_s // 3600).astype(int)
    night, day = np.sum(hours < 12), np.sum(hours >= 12)
    assert day / night == pytest.approx(3.0, rel=0.03)
    assert len(req) / 86400 == pytest.approx(2.0, rel=0.02)
    default = diurnal_profile(lab.scenario.Arrivals("diurnal", rate_per_s=1.0))
    assert np.argmax(default) in (13, 14)  # the default sinusoid peaks at 14:00


def test_mmpp_is_bursty_with_the_stationary_mean_rate():
    arr = {"process": "mmpp", "rate_high_per_s": 50.0, "rate_low_per_s": 2.0, "mean_high_s": 30.0, "mean_low_s": 120.0}
    req = stream({"arrivals": arr}, duration_s=200_000)
    expected = (50 * 30 + 2 * 120) / 150                       # stationary mixture of the two rates
    assert mean_rate_per_s(lab.scenario.Arrivals(**arr)) == pytest.approx(expected)
    assert len(req) / 200_000 == pytest.approx(expected, rel=0.05)
    assert dispersion(req.t_arrival_s) > 5                     # far burstier than Poisson's 1


def test_count_mode_for_every_process():
    rng = np.random.default_rng(0)
    for a in (lab.scenario.Arrivals("diurnal", rate_per_s=3.0),
              lab.scenario.Arrivals("mmpp", rate_high_per_s=9, rate_low_per_s=1, mean_high_s=5, mean_low_s=5)):
        t = arrival_times(rng, a, n=5000, duration_s=None)
        assert len(t) == 5000 and np.all(np.diff(t) >= 0)


def test_zipf_prompts_and_tokens_belong_to_the_prompt():
    req = stream({"arrivals": {"process": "poisson", "rate_per_s": 100.0},
                  "prompts": {"catalog": 1000, "popularity": {"dist": "zipf", "alpha": 1.0}},
                  "input_tokens": {"dist": "lognormal", "median": 500, "sigma": 0.5}}, requests=200_000)
    p = zipf_probabilities(1000, 1.0)
    freq = np.bincount(req.prompt, minlength=1000) / len(req)
    assert freq[0] == pytest.approx(p[0], abs=4 * np.sqrt(p[0] / len(req)))
    assert freq[9] == pytest.approx(p[9], abs=4 * np.sqrt(p[9] / len(req)))
    for key in (0, 5, 77):
        assert len(set(req.input_tokens[req.prompt == key].tolist())) == 1
    # lengths are drawn per catalog prompt: their median over distinct prompts is the scenario's
    _, first = np.unique(req.prompt, return_index=True)
    assert np.median(req.input_tokens[first]) == pytest.approx(500, rel=0.1)


def test_tenant_and_priority_shares():
    req = stream({"arrivals": {"process": "poisson", "rate_per_s": 100.0},
                  "tenants": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}],
                  "priorities": {"high": 0.2, "normal": 0.5, "low": 0.3}}, requests=100_000)
    assert np.mean(req.tenant == 0) == pytest.approx(0.75, abs=0.01)
    assert np.mean(req.priority == 0) == pytest.approx(0.2, abs=0.01)
    assert np.mean(req.priority == 2) == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("name,fmt", [("azure_conv", "azure"), ("mooncake_conversation", "mooncake")])
def test_trace_replay_reproduces_counts_and_token_totals(name, fmt):
    path = shipped_trace_path(name)
    if fmt == "azure":
        import csv
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
        n, tin, tout = len(rows), sum(int(r["ContextTokens"]) for r in rows), sum(int(r["GeneratedTokens"]) for r in rows)
    else:
        rows = [json.loads(line) for line in open(path)]
        n, tin, tout = len(rows), sum(r["input_length"] for r in rows), sum(r["output_length"] for r in rows)
    s = lab.scenario_from_dict({"name": name, "traffic": {"arrivals": {"process": "trace", "path": str(path), "format": fmt}},
                                "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 1000}]})
    led = lab.simulate(s, progress=False).ledger
    assert len(led) == n
    assert int(led.input_tokens.sum()) == tin
    assert int(led.output_tokens.sum()) == tout


def test_corrupt_trace_row_is_reported_by_line(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    good = '{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'
    trace.write_text(good * 3 + '{"timestamp": 5, "input_length": "ten", "output_length": 5, "hash_ids": [1]}\n' + good)
    sc = tmp_path / "s.toml"
    sc.write_text('name = "x"\n[traffic]\narrivals = { process = "trace", path = "t.jsonl", format = "mooncake" }\n'
                  '[[providers]]\nname = "openai"\nmodel = "gpt-4o-mini"\n')
    assert main(["run", str(sc)]) == 2
    err = capsys.readouterr().err
    assert ":4:" in err and "input_length" in err and "Traceback" not in err
    # opting in to skipping bad rows runs, and the row is left out
    sc.write_text(sc.read_text().replace('format = "mooncake" }', 'format = "mooncake", skip_bad_rows = true }'))
    r = lab.simulate(lab.load_scenario(sc), progress=False)
    assert r.summary()["requests"] == 4
