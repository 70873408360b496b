"""KPI formulas: values on a hand-made ledger, pointed errors, and no way out of the sandbox.

Expected values are worked out by hand from the six rows below.
"""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest

from lab.analysis.kpi import KPI, Formula, KPIError, kpi_table, standard_kpis, tokenize


@pytest.fixture
def ledger():
    return pd.DataFrame({
        "request_id": np.arange(6),
        "t_arrival_s": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0],
        "tenant": pd.Categorical(["a", "a", "b", "b", "a", "b"]),
        "cost_usd": [1.0, 2.0, 0.0, 0.0, 3.0, 4.0],
        "baseline_cost_usd": [1.0, 2.0, 2.0, 5.0, 3.0, 4.0],
        "outcome": pd.Categorical(["ok", "ok", "cache_hit", "cache_hit", "error", "ok"]),
        "latency_ms": [100.0, 200.0, 2.0, 2.0, 5000.0, 300.0],
        "input_tokens": [10, 20, 30, 40, 50, 60],
        "output_tokens": [1, 2, 3, 4, 5, 6],
        "stage_cache": [False, False, True, True, False, False],
    })


@pytest.mark.parametrize("formula,expected", [
    ("sum(cost_usd) / count()", 10 / 6),
    ("1000 * sum(cost_usd) / count(request_id)", 10_000 / 6),
    ('count(outcome == "cache_hit") / count()', 2 / 6),
    ('share(outcome == "cache_hit")', 2 / 6),
    ("share(stage_cache)", 2 / 6),
    ("1 - sum(cost_usd) / sum(baseline_cost_usd)", 1 - 10 / 17),
    ('p95(latency_ms where outcome == "ok")', 290.0),          # numpy linear: 200 + 0.9 * (300 - 200)
    ("percentile(latency_ms, 50)", 150.0),                      # between 100 and 200
    ("median(latency_ms)", 150.0),
    ('mean(cost_usd where tenant == "b")', 4 / 3),
    ('share(latency_ms > 1000 or outcome == "error")', 1 / 6),
    ('share(not (outcome == "ok") and latency_ms < 10)', 2 / 6),
    ('count(tenant == "a")', 3.0),
    ("distinct(tenant)", 2.0),
    ("max(baseline_cost_usd - cost_usd)", 5.0),
    ("-min(latency_ms)", -2.0),
    ("sum(abs(cost_usd - 2))", 1 + 0 + 2 + 2 + 1 + 2),
    ("mean(input_tokens + output_tokens)", (210 + 21) / 6),
    ("sum(cost_usd) / sum(cost_usd where tenant == \"z\")", np.nan),   # division by zero: no data
    ("2 * (1 + 3) - 1.5e1 / 5", 5.0),
])
def test_formula_values_by_hand(ledger, formula, expected):
    value = Formula(formula).evaluate(ledger)
    if np.isnan(expected):
        assert np.isnan(value)
    else:
        assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("formula,column,message", [
    ("sum(cost_usd", 13, "expected ')' to close sum( at column 4"),
    ("sum(cost_usd))", 14, "no matching '('"),
    ("sum(costs)", 5, "unknown column 'costs' (did you mean 'cost_usd'?)"),
    ("summ(cost_usd)", 1, "unknown function 'summ' (did you mean 'sum'?)"),
    ("cost_usd * 2", 1, "per-request column: wrap it in an aggregate"),
    ("sum(cost_usd) +", 16, "ends where a value was expected"),
    ("sum(cost_usd) $ 2", 15, "unexpected character '$'"),
    ("sum(sum(cost_usd))", 5, "aggregates cannot be nested"),
    ("percentile(latency_ms)", 22, "needs a second argument q"),
    ("percentile(latency_ms, 120)", 24, "between 0 and 100"),
    ("sum(outcome)", 5, "outcome is text"),
    ('share(outcome == "cach_hit")', 18, "did you mean 'cache_hit'"),
    ("share(outcome == 1)", 7, "cannot compare text"),
    ("sum(cost_usd) = 1", 15, "use '==' to compare"),
    ("sum(cost_usd) sum(cost_usd)", 15, "missing an operator"),
    ("", 1, "the formula is empty"),
    ("mean(1)", 6, "uses no column"),
    ("share(cost_usd)", 7, "needs a condition"),
    ("3abc", 2, "right after the number 3"),
    ('share(outcome == "ok)', 18, "string is never closed"),
    ("share(latency_ms > 1 > 0)", 22, "cannot be chained"),
    ("sum(cost_usd, 2)", 13, "takes one argument"),
])
def test_malformed_formulas_point_at_the_offending_token(formula, column, message):
    with pytest.raises(KPIError) as info:
        Formula(formula)
    err = info.value
    assert err.column == column, err.pointer()
    assert message in str(err)
    assert f"column {column}" in str(err)
    caret_line = err.pointer().splitlines()[1]
    assert caret_line.index("^") == column - 1


HOSTILE = [
    '__import__("os").system("touch pwned")',
    'open("/etc/passwd")',
    'eval("1 + 1")',
    'exec("import os")',
    "sum(cost_usd).__class__",
    "sum(cost_usd.__class__)",
    "().__class__.__bases__[0].__subclasses__()",
    "[c for c in ()]",
    "lambda: 1",
    "sum(__builtins__)",
    "sum(stage___class__)",
    "getattr(cost_usd, 'real')",
    "globals()",
    "sum(cost_usd); import os",
    "sum(cost_usd) if 1 else 0",
]


@pytest.mark.parametrize("formula", HOSTILE)
def test_no_formula_reaches_python_builtins_or_the_filesystem(formula, ledger, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KPIError):
        Formula(formula).evaluate(ledger)
    assert not (tmp_path / "pwned").exists()


def test_valid_formulas_never_use_eval_exec_compile_or_open(ledger, monkeypatch):
    """With Python's code-running builtins booby-trapped, parsing and evaluating still work."""
    def trap(*_a, **_k):
        raise AssertionError("a KPI formula reached a Python code-execution builtin")

    for name in ("eval", "exec", "compile", "open"):
        monkeypatch.setattr(builtins, name, trap)
    assert Formula('share(outcome == "cache_hit") + sum(cost_usd)').evaluate(ledger) == pytest.approx(2 / 6 + 10)


def test_tokenizer_positions():
    toks = tokenize('p95(latency_ms) >= 2.5e3 and "x"')
    assert [(t.kind, t.text, t.col) for t in toks] == [
        ("name", "p95", 1), ("op", "(", 4), ("name", "latency_ms", 5), ("op", ")", 15), ("op", ">=", 17),
        ("num", "2.5e3", 20), ("name", "and", 26), ("str", '"x"', 30), ("end", "", 33)]


def test_kpi_status_and_values_over_time(ledger):
    cost = KPI("cost", "sum(cost_usd)", "USD", warning=4, critical=6)
    assert not cost.higher_is_better
    frame = cost.over_time(ledger, bucket_s=25)       # buckets [0, 25): t = 0, 10, 20; [25, end]: 30, 40, 50
    assert list(frame["t_start_s"]) == [0.0, 25.0]
    assert list(frame["value"]) == [3.0, 7.0]
    assert list(frame["status"]) == ["ok", "critical"]
    hit = KPI("hit rate", 'share(outcome == "cache_hit")', "share", warning=0.5, critical=0.3)
    assert hit.higher_is_better                        # warning above critical: lower is worse
    assert [hit.status(v) for v in (0.6, 0.4, 0.2, float("nan"))] == ["ok", "warning", "critical", "no data"]
    assert list(hit.over_time(ledger, bucket_s=25)["value"]) == pytest.approx([1 / 3, 1 / 3])


def test_standard_kpis_on_the_hand_made_ledger(ledger):
    table = kpi_table(standard_kpis(sla_ms=1000), ledger)
    assert table.loc["cost per 1k requests", "value"] == pytest.approx(10_000 / 6)
    assert table.loc["SLA violation rate", "value"] == pytest.approx(1 / 6)    # the 5,000 ms error
    assert table.loc["SLA violation rate", "status"] == "critical"            # 16.7 % > 5 %
    assert table.loc["error rate", "value"] == pytest.approx(1 / 6)
    assert table.loc["share of bill saved", "value"] == pytest.approx(7 / 17)


def test_a_column_missing_from_this_ledger_is_reported_at_its_token(ledger):
    with pytest.raises(KPIError, match="no column 'stage_dedup'") as info:
        Formula("share(stage_dedup)").evaluate(ledger)
    assert info.value.column == 7


def test_kpis_from_a_toml_file(tmp_path, ledger):
    from lab.analysis.kpi import load_kpis
    from lab.errors import ConfigError

    good = tmp_path / "kpis.toml"
    good.write_text('[[kpi]]\nname = "b cost"\nformula = \'sum(cost_usd where tenant == "b")\'\nunit = "USD"\n'
                    "warning = 3\ncritical = 5\n")
    (kpi,) = load_kpis(good)
    assert kpi.value(ledger) == 4.0 and kpi.status(kpi.value(ledger)) == "warning"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[kpi]]\nname = "x"\nformula = "sum(cost_usd"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: kpi\[0\] \(x\): formula 'sum\(cost_usd', column 13"):
        load_kpis(bad)
    bad.write_text('[[kpi]]\nname = "x"\nformula = "count()"\nwarn = 1\n')
    with pytest.raises(ConfigError, match="unknown field"):
        load_kpis(bad)
