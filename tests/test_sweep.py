"""Parameter sweeps: grid paths, validation, the same numbers on local processes and on Dask, CIs.

Expected numbers come from (a) `lab.simulate` run directly on the same scenario with the grid
value set by hand (a sweep must be exactly those runs), (b) Poisson arrivals: N requests at
rate λ span about N/λ seconds, (c) Student's t interval checked against scipy.stats.t.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import lab
from lab.cli import main
from lab.sweep import (
    SweepError,
    apply_point,
    parse_path,
    read_grid,
    scenario_source,
    summarize,
    sweep_runs,
)

SCENARIO = "scenarios/support-chatbot.toml"
REQUESTS = 1500


@pytest.fixture(autouse=True)
def _repo_cwd(root, monkeypatch):
    monkeypatch.chdir(root)


def test_parse_path_reads_keys_indices_and_names():
    assert parse_path("pipeline[0].capacity") == ["pipeline", 0, "capacity"]
    assert parse_path("traffic.arrivals.rate_per_s") == ["traffic", "arrivals", "rate_per_s"]
    assert parse_path("pipeline[cache].ttl_s") == ["pipeline", ("name", "cache"), "ttl_s"]
    assert parse_path("providers[-1].latency_ms.mean") == ["providers", -1, "latency_ms", "mean"]


def test_apply_point_sets_by_index_and_by_name_without_touching_the_original():
    data = scenario_source(SCENARIO).data
    out = apply_point(data, {"pipeline[0].capacity": 7, "pipeline[prompt_cache].rules": "ideal", "sla.p95_ms": 1.0})
    assert out["pipeline"][0]["capacity"] == 7 and out["pipeline"][2]["rules"] == "ideal"
    assert out["sla"]["p95_ms"] == 1.0
    assert data["pipeline"][0]["capacity"] == 1000 and data["pipeline"][2]["rules"] == "openai"


@pytest.mark.parametrize("grid, says", [
    ({"pipeline[5].capacity": [1]}, "'pipeline[5].capacity': pipeline has 3 item(s), so index 5 is out of range"),
    ({"traffic.arrival.rate_per_s": [1]}, "did you mean 'arrivals'?"),
    ({"pipeline[router].strategy": ["cheapest"]}, "pipeline has no item named 'router'"),
    ({"pipeline[0].capcity": [10]}, "pipeline[0].capcity: unknown field (did you mean 'capacity'?)"),
    ({"pipeline[0].capacity": [10, -1]}, "grid point pipeline[0].capacity = -1"),
    ({"sla.p95_ms": 5000}, "'sla.p95_ms': expected a list of values"),
    ({"sla.p95_ms": []}, "'sla.p95_ms': expected at least one value"),
    ({"sla..p95_ms": [1]}, "grid path 'sla..p95_ms': cannot read ''"),
    ({"name.x": [1]}, "'name.x': name is not a table"),
])
def test_bad_grid_paths_give_one_line_naming_the_path_and_run_nothing(grid, says, monkeypatch):
    import sys  # `lab.sweep` is the function; the module is in sys.modules

    def must_not_run(*args, **kwargs):
        raise AssertionError("a bad grid must fail before anything is submitted")

    monkeypatch.setattr(sys.modules["lab.sweep"], "_Pool", must_not_run)
    with pytest.raises(SweepError) as err:
        lab.sweep(SCENARIO, grid, seeds=2, requests=100, progress=False)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_bad_grid_exits_2_with_one_line(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text('"pipeline[9].capacity" = [1, 2]\n')
    assert main(["sweep", SCENARIO, "--grid", str(grid), "--seeds", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pipeline[9].capacity" in err


def test_read_grid_flattens_nested_tables_into_dotted_paths(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('"pipeline[0].capacity" = [100, 1000]\n[traffic.arrivals]\nrate_per_s = [5, 10]\n')
    assert read_grid(grid) == {"pipeline[0].capacity": [100, 1000], "traffic.arrivals.rate_per_s": [5, 10]}


GRID = {"pipeline[0].capacity": [20, 2000], "traffic.arrivals.rate_per_s": [5.0, 20.0]}


@pytest.fixture(scope="module")
def local_runs():
    return sweep_runs(SCENARIO, GRID, seeds=[0, 1, 2], requests=REQUESTS, workers=2, progress=False)


def test_sweep_runs_are_exactly_the_direct_simulations(local_runs):
    """Each row equals lab.simulate on the scenario with the grid values set by hand."""
    base = lab.load_scenario(SCENARIO)
    assert len(local_runs) == 4 * 3
    for cap, rate, seed in [(20, 20.0, 1), (2000, 5.0, 2)]:
        cache = dataclasses.replace(base.pipeline[0], capacity=cap)
        arrivals = dataclasses.replace(base.traffic.arrivals, rate_per_s=rate)
        scenario = base.replace(pipeline=(cache, *base.pipeline[1:]),
                                traffic=dataclasses.replace(base.traffic, arrivals=arrivals))
        direct = lab.simulate(scenario, seed=seed, requests=REQUESTS, progress=False).summary()
        row = local_runs[(local_runs["pipeline[0].capacity"] == cap) & (local_runs["traffic.arrivals.rate_per_s"] == rate)
                         & (local_runs["seed"] == seed)].iloc[0]
        assert row["cost_usd"] == direct["cost_usd"]
        assert row["latency_ms.p95"] == direct["latency_ms"]["p95"]
        assert row["by_stage.cache.hits"] == direct["by_stage"]["cache"]["hits"]


def test_grid_values_reach_the_runs(local_runs):
    """Poisson arrivals: N requests at rate λ span about N/λ s; a bigger cache hits more often."""
    by_rate = local_runs.groupby("traffic.arrivals.rate_per_s")["simulated_s"].mean()
    for rate, span_s in by_rate.items():
        assert span_s == pytest.approx(REQUESTS / rate, rel=0.1)
    by_cap = local_runs.groupby("pipeline[0].capacity")["cache_hit_rate"].mean()
    assert by_cap[2000] > by_cap[20] + 0.1


def test_dask_localcluster_gives_the_same_numbers_as_local_processes(local_runs):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp", host="127.0.0.1", dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        on_dask = sweep_runs(SCENARIO, GRID, seeds=[0, 1, 2], requests=REQUESTS, client=client, progress=False)
    assert on_dask.columns.tolist() == local_runs.columns.tolist()
    assert on_dask.equals(local_runs)                     # bit for bit, same row order


def test_summary_has_mean_and_student_t_interval_per_metric_per_point(local_runs):
    stats = pytest.importorskip("scipy.stats")
    table = summarize(local_runs)
    assert len(table) == 4 and (table["seeds"] == 3).all()
    row = table.iloc[0]
    values = local_runs[(local_runs["pipeline[0].capacity"] == row["pipeline[0].capacity"])
                        & (local_runs["traffic.arrivals.rate_per_s"] == row["traffic.arrivals.rate_per_s"])]["cost_usd"]
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert row["cost_usd.mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert row["cost_usd.ci95_low"] == pytest.approx(values.mean() - half, rel=1e-9)
    assert row["cost_usd.ci95_high"] == pytest.approx(values.mean() + half, rel=1e-9)
    only = summarize(local_runs, metrics=["cost_usd", "by_stage.cache"])
    assert "cost_usd.mean" in only and "by_stage.cache.hits.mean" in only and "latency_ms.p95.mean" not in only
    with pytest.raises(SweepError, match="did you mean 'cost_usd'"):
        summarize(local_runs, metrics=["cost_usdd"])


def test_one_seed_has_no_interval_and_a_loaded_scenario_is_accepted():
    scenario = lab.load_scenario(SCENARIO)
    table = lab.sweep(scenario, {"sla.p95_ms": [1000.0, 1e6]}, seeds=1, requests=500, workers=1, progress=False)
    assert np.isnan(table["cost_usd.ci95_low"]).all()
    low, high = table["sla_violation_rate.mean"]            # the same runs judged against a tight and a loose SLA
    assert low > 0.5 and high == 0.0
    with pytest.raises(SweepError, match="changed in memory"):
        lab.sweep(scenario.replace(name="x"), {"sla.p95_ms": [1.0]}, seeds=1, progress=False)


def test_cli_sweep_prints_a_table_and_writes_the_csv(tmp_path, capsys):
    import pandas as pd

    grid = tmp_path / "grid.toml"
    grid.write_text('"pipeline[cache].capacity" = [50, 500]\n')
    out = tmp_path / "sweep.csv"
    assert main(["sweep", SCENARIO, "--grid", str(grid), "--seeds", "2", "--workers", "2",
                 "--requests", "800", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 grid point(s) x 2 seed(s)" in printed and "±" in printed
    table = pd.read_csv(out)
    assert table["pipeline[cache].capacity"].tolist() == [50, 500]
    assert {"cost_usd.mean", "cost_usd.ci95_low", "cost_usd.ci95_high"} <= set(table.columns)


def test_a_run_that_fails_in_a_worker_comes_back_as_one_line():
    """A grid point that validates but produces no requests (ScenarioError inside simulate, in a child process)."""
    data = scenario_source(SCENARIO).data
    data.pop("requests", None)
    with pytest.raises(SweepError, match=r"^seed 0: .*produced no requests") as err:
        lab.sweep(data, {"duration_s": [1e-6]}, seeds=1, workers=1, progress=False)
    assert "\n" not in str(err.value)
