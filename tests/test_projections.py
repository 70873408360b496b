"""Cost projections and scale analysis (lab/projections.py) and the `costlab project` command.

Expected numbers: prices from genai-prices (`price_usage_exact`), the closed form of
compounded growth integrated over a horizon (checked against a direct numerical sum),
Student-t quantiles from statistical tables, and a provider whose capacity is known exactly
(slots / service time) for where p95 must break.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import scenario as make_scenario

import lab
from lab.cli import main
from lab.pricing import price_usage_exact
from lab.projections import (
    DAYS_PER_MONTH,
    growth_factor,
    project,
    requests_per_day,
    scale_analysis,
    scale_traffic,
)
from lab.traces import read_shipped_trace, shipped_trace_path

CONSTANT_TOKENS = {"input_tokens": {"dist": "constant", "value": 1000},
                   "output_tokens": {"dist": "constant", "value": 200}}


@pytest.mark.parametrize("df,table", [(1, 12.706), (4, 2.776), (10, 2.228), (30, 2.042), (40, 2.021), (120, 1.980)])
def test_mean_ci_uses_the_t_quantiles_of_the_tables(df, table):
    """The 95 % interval's half-width is t_{0.975, n-1} s / sqrt(n), with t from the printed tables
    (Student's t table, 3 decimals; e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2)."""
    from lab.analysis.stats import mean_ci

    n = df + 1
    x = np.arange(n, dtype=float)                # sample sd = sqrt(n (n + 1) / 12)
    ci = mean_ci(x)
    sd = math.sqrt(n * (n + 1) / 12)
    assert ci.mean == pytest.approx((n - 1) / 2)
    assert ci.half == pytest.approx(table * sd / math.sqrt(n), rel=5e-4)


def test_mean_ci_of_one_value_has_no_interval():
    from lab.analysis.stats import mean_ci

    assert math.isnan(mean_ci([5.0]).half)


def test_growth_factor_is_the_integral_of_compounded_growth():
    assert growth_factor(365.25, 0.0) == 365.25
    # traffic multiplier (1 + g) ** (day / days-per-month), summed over a year in 1/100-day steps
    g, steps = 0.05, 36525
    days = (np.arange(steps) + 0.5) * 365.25 / steps
    numeric = float(np.sum((1 + g) ** (days / DAYS_PER_MONTH)) * 365.25 / steps)
    assert growth_factor(365.25, g) == pytest.approx(numeric, rel=1e-8)
    assert growth_factor(365.25, g) == pytest.approx(DAYS_PER_MONTH * (1.05**12 - 1) / math.log(1.05), rel=1e-12)


def test_projection_of_constant_traffic_matches_the_price_list():
    # every request is 1,000 in / 200 out on gpt-4o-mini at 10 req/s: a day is 864,000 such calls
    s = make_scenario(requests=500, traffic=CONSTANT_TOKENS)
    per_call = price_usage_exact("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=200)
    table = project(s, seeds=3, growth_per_month=0.10).table.set_index("horizon")
    assert table.loc["day", "baseline_usd"] == pytest.approx(10 * 86400 * per_call * growth_factor(1, 0.10),
                                                             rel=1e-9)
    assert table.loc["year", "optimized_usd"] == pytest.approx(10 * 86400 * per_call * growth_factor(365.25, 0.10),
                                                               rel=1e-9)
    assert table.loc["week", "baseline_ci95_usd"] == pytest.approx(0.0, abs=1e-9)   # no randomness in cost
    assert list(table.index) == ["day", "week", "month", "year"]


def test_requests_per_day_of_every_arrival_process():
    trace = read_shipped_trace("azure_conv")
    azure = lab.scenario_from_dict({"traffic": {"arrivals": {"process": "trace", "format": "azure",
                                                             "path": str(shipped_trace_path("azure_conv"))}},
                                    "providers": [{"name": "openai", "model": "gpt-4o-mini"}]})
    assert requests_per_day(azure) == pytest.approx(len(trace) / trace.t_arrival_s[-1] * 86400)
    assert requests_per_day(scale_traffic(azure, 10)) == pytest.approx(10 * requests_per_day(azure))
    mmpp = make_scenario(traffic={"arrivals": {"process": "mmpp", "rate_high_per_s": 10.0, "rate_low_per_s": 1.0,
                                               "mean_high_s": 10.0, "mean_low_s": 30.0}})
    assert requests_per_day(mmpp) == pytest.approx((10 * 10 + 1 * 30) / 40 * 86400)
    scaled = scale_traffic(mmpp, 3).traffic.arrivals
    assert (scaled.rate_high_per_s, scaled.rate_low_per_s, scaled.mean_high_s) == (30.0, 3.0, 10.0)


def capacity_scenario(sla=None):
    """4 slots, 1 s per call (constant), 2 req/s: half busy; capacity 4 req/s = x2 traffic."""
    s = make_scenario(requests=None, duration_s=300, traffic={"arrivals": {"process": "poisson", "rate_per_s": 2.0},
                                                              **CONSTANT_TOKENS},
                      providers=[{"name": "openai", "model": "gpt-4o-mini", "concurrency": 4,
                                  "latency_ms": {"dist": "constant", "value": 1000}}],
                      sla=sla or {"p95_ms": 3000})
    return s


def test_scale_analysis_finds_where_p95_breaks_below_the_capacity_limit():
    result = scale_analysis(capacity_scenario(), factors=(1, 4), seeds=2, max_requests=3000)
    t = result.table.set_index("traffic")
    assert bool(t.loc["x1", "meets_sla"]) and not bool(t.loc["x4", "meets_sla"])
    # no cache: cost is proportional to traffic, exactly (constant tokens)
    assert t.loc["x4", "cost_usd_per_day"] == pytest.approx(4 * t.loc["x1", "cost_usd_per_day"], rel=1e-9)
    notes = " ".join(result.notes)
    assert "utilisation 50 %" in notes and "saturate at about 4.0 requests/s (x2)" in notes
    # an M/D/4 queue meets a 3 s p95 at x1 and cannot at x2 (utilisation 1, waits grow without bound)
    low, high = (float(x) for x in notes.split("SLA between x")[1].split(" traffic")[0].split(" and x"))
    assert 1.0 <= low < high <= 2.0 + 1e-9


def test_a_p99_sla_is_read_as_a_p99_target():
    """The same queue with [sla] p99_ms: the table carries p99 and meets_sla follows it, not p95."""
    result = scale_analysis(capacity_scenario({"p99_ms": 3000}), factors=(1, 4), seeds=2, max_requests=3000)
    t = result.table.set_index("traffic")
    assert "p99_ms" in t.columns and (t["p99_ms"] >= t["p95_ms"]).all()
    assert list(t["meets_sla"]) == [bool(v <= 3000) for v in t["p99_ms"]] and not bool(t.loc["x4", "meets_sla"])
    notes = " ".join(result.notes)
    assert "no breaking point" not in notes and ("p99 crosses" in notes or "p99 already" in notes)


def test_costlab_project_prints_projection_and_scale(capsys, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "p"\nduration_s = 60\n[traffic]\narrivals = { process = "poisson", rate_per_s = 5.0 }\n'
                    '[[providers]]\nname = "openai"\nmodel = "gpt-4o-mini"\n[sla]\np95_ms = 20000\n')
    assert main(["project", str(path), "--seeds", "2", "--growth", "0.05", "--scale", "1,10"]) == 0
    out = capsys.readouterr().out
    assert "Cost projection" in out and "year" in out and "Scale analysis" in out and "x10" in out
    assert main(["project", str(path), "--scale", "1,zero"]) == 2
    assert "expected factors like 1,10,100" in capsys.readouterr().err
