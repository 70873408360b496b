"""The surprises a learner met (issue 20), each pinned: refused at once, worded as measured, read as text.

Expected values come from the issue's own reports (what was wrong) and from the definitions they
are checked against: argparse's usage exit code 2, lab.fmt's units, the detector's own counts.
"""

from __future__ import annotations

import io
import json
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lab
import lab.cli.run
import lab.cli.twin
from lab import fmt
from lab.analysis.kpi import load_kpis
from lab.cli import main
from lab.cli.args import factors, positive_int
from lab.errors import ConfigError, CostlabError
from lab.lessons.checks import Check, Measured
from lab.live import Cassette, Session
from lab.providers.fake_server import FakeProviderServer
from lab.widgets import Dashboard, knob_hint

SCENARIO = "scenarios/support-chatbot.toml"


def _no_simulation(*args, **kwargs):
    raise AssertionError("a simulation ran before the arguments were checked")


@pytest.mark.parametrize("argv", [
    ["run", SCENARIO, "--requests", "0"],
    ["run", SCENARIO, "--requests", "-5"],
    ["demo", "--requests", "0"],
    ["project", SCENARIO, "--scale", "0,-1"],
    ["project", SCENARIO, "--scale", "1,nan"],
    ["project", SCENARIO, "--requests", "0"],
    ["project", SCENARIO, "--seeds", "0"],
    ["sweep", SCENARIO, "--grid", "examples/grid.toml", "--requests", "0"],
    ["report", SCENARIO, "--out", "never-written", "--requests", "0"],
])
def test_bad_arguments_are_refused_before_any_simulation(argv, monkeypatch, capsys):
    monkeypatch.setattr(lab.cli.run, "simulate", _no_simulation)
    monkeypatch.setattr(lab.cli.twin, "seed_metrics", _no_simulation)
    started = time.monotonic()
    assert main(argv) == 2
    assert "expected" in capsys.readouterr().err
    assert time.monotonic() - started < 2.0     # the issue measured 12 s of simulation before the refusal


@given(st.text(max_size=30))
def test_argument_parsers_accept_only_what_they_promise(text):
    try:
        n = positive_int(text)
    except Exception as exc:     # noqa: BLE001 - argparse only turns ArgumentTypeError into a usage line
        assert type(exc).__name__ == "ArgumentTypeError"
    else:
        assert isinstance(n, int) and n >= 1
    try:
        values = factors(text)
    except Exception as exc:     # noqa: BLE001
        assert type(exc).__name__ == "ArgumentTypeError"
    else:
        assert values and all(0 < v < float("inf") for v in values)


@pytest.mark.parametrize("seconds, shown", [(10, "10 s"), (3.5, "3.5 s"), (90, "90 s"), (600, "10.0 min"),
                                            (3600, "60.0 min"), (7200, "2.00 h"), (86400, "24.00 h"),
                                            (7 * 86400, "7.0 days")])
def test_simulated_time_reads_in_a_sensible_unit(seconds, shown):
    assert fmt.duration(seconds) == shown


def test_a_short_run_is_not_over_zero_hours():
    out = io.StringIO()
    lab.cli.run.print_result(lab.simulate(lab.load_scenario(SCENARIO), requests=200), out)
    first = out.getvalue().splitlines()[0]
    assert "0.00 simulated hours" not in first
    assert re.search(r"over [\d.,]+ (s|min|h|days) simulated", first), first


def test_a_duplicate_kpi_name_is_refused(tmp_path):
    path = tmp_path / "kpis.toml"
    path.write_text('[[kpi]]\nname = "p95"\nformula = "p95(latency_ms)"\n'
                    '[[kpi]]\nname = "p95"\nformula = "p99(latency_ms)"\n')
    with pytest.raises(ConfigError, match=r"kpi\[1\]: the name 'p95' is already used by kpi\[0\]"):
        load_kpis(path)


def test_the_report_words_the_detector_as_measured():
    from lab.report.report import DETECTOR_SERIES, detector_quality

    q = detector_quality()["zscore"]
    # the README's figures: 20 series, 195 of 200 spikes found, 13 false alarms
    assert DETECTOR_SERIES == 20
    assert (q["spikes"], q["true_positives"], q["false_positives"]) == (200, 195, 13)
    assert f"{q['precision']:.2f}" == "0.94" and f"{q['recall']:.3g}" == "0.975"


def test_an_unknown_challenge_has_no_leaderboard(tmp_path, capsys):
    pytest.importorskip("sqlalchemy")
    code = main(["leaderboard", "b9-nope", "--db", f"sqlite:///{tmp_path / 'lb.db'}"])
    assert code == 2
    assert "no such challenge" in capsys.readouterr().err


def test_a_cassette_answers_identical_calls_in_the_order_they_were_recorded(tmp_path):
    path = tmp_path / "calls.jsonl"
    with FakeProviderServer(port=0) as fake:
        live = Session(budget_usd=1.0, cassette=path, base_url=fake.base_urls())
        for _ in range(2):
            live.call("openai", "gpt-4o-mini", prompt="Same question", max_tokens=16)
    lines = path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries[0]["key"] == entries[1]["key"]
    entries[0]["text"], entries[1]["text"] = "first answer", "second answer"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    replay = Session(budget_usd=1.0, cassette=path, mode="replay")
    got = [replay.call("openai", "gpt-4o-mini", prompt="Same question", max_tokens=16).text for _ in range(3)]
    assert got == ["first answer", "second answer", "second answer"]   # then the last one again
    assert len(Cassette(path).entries()) == 2


def test_the_knob_hint_for_cache_size_is_the_cache_capacity():
    assert knob_hint("cache size") == " (did you mean 'cache capacity'?)"
    assert knob_hint("budget") == " (did you mean 'daily budget (USD)'?)"
    with pytest.raises(CostlabError, match="did you mean 'cache capacity'"):
        Dashboard("support-chatbot", knobs=["cache size"], requests=100)


def test_integer_knobs_are_integer_sliders():
    import ipywidgets

    dash = Dashboard("support-chatbot", knobs=["cache capacity"], requests=200, debounce_s=0)
    assert isinstance(dash.controls["cache capacity"], ipywidgets.IntSlider)


def test_marks_and_measurements_read_in_any_font():
    html = Check("00", True, "cut $2.03 from $3.28", {"cost_usd": 2.03})._repr_html_() + \
        Check("00", False, "not yet", {})._repr_html_()
    assert "passed" in html and "not yet" in html
    assert not set(html) & set("✓✗✅❌")
    assert "$" not in html and "&#36;2.03" in html
    shown = repr(Measured({"cost_usd": 2.0312345678901234, "p95_ms": 345008600.123, "error_rate": 0.012345}))
    assert shown == "{'cost_usd': $2.03, 'p95_ms': 345,008,600 ms, 'error_rate': 1.23 %}"


def test_failed_requests_stay_out_of_the_latency_cdf():
    """Lesson 08's CDF ran down to 1e-3 ms: rejected requests were drawn at 0 ms. Now they are left out and named."""
    from lab import lessons, plots

    result = lab.simulate(lessons.variant(lessons.BUDGET_SCENARIO), seed=0, requests=600)
    rejected = float((result.ledger["outcome"] == "rejected").mean())
    assert rejected > 0.1            # the budget binds (about a quarter at 600 requests)
    fig = plots.latency_cdf(result)
    optimized = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("optimized")][0]
    assert f"{100 * rejected:.1f} % never answered" in optimized.get_label()
    assert min(optimized.get_xdata()) >= 1.0                 # no request answered in under a millisecond
    assert max(optimized.get_ydata()) == pytest.approx(1 - rejected, abs=1e-9)
