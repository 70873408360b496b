"""`costlab report` and lab.plots: every chart is written and embedded, numbers agree, writes are atomic.

The reference numbers are the simulator's own summary (cost, baseline cost) for the same seed.
"""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.figure import Figure

import lab
from lab import plots
from lab.cli import main
from lab.report import Chart, build_report

SCENARIO = "scenarios/support-chatbot.toml"
PNG = b"\x89PNG\r\n\x1a\n"
CHARTS = {"cost_over_time.png", "savings_waterfall.png", "latency_cdf.png", "cost_quality_frontier.png",
          "attribution_tenant.png", "forecast.png"}


class Images(HTMLParser):
    """Collects <img> and <a> attributes and headings from the report's HTML."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.headings, self._h = [], [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a.get("href"))
        self._h = tag in ("h1", "h2")

    def handle_data(self, data):
        if self._h:
            self.headings.append(data)
            self._h = False


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "report"
    report = build_report(SCENARIO, seeds=2, requests=1500, budget_usd=0.1, teams={"retail": "commerce"})
    report.write(out)
    return report, out


def test_report_files_and_html_contain_every_chart(written):
    report, out = written
    files = {p.name for p in out.iterdir()}
    expected = CHARTS | {"attribution_team.png", "report.html", "report.json"}
    assert expected <= files
    for name in files - {"report.html", "report.json"}:
        assert (out / name).read_bytes().startswith(PNG), name
    parser = Images()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    embedded = {img["data-file"]: img["src"] for img in parser.images}
    assert set(embedded) == files - {"report.html", "report.json"}          # every chart, nothing else
    for name, src in embedded.items():
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (out / name).read_bytes()   # same picture as the file
        assert name in parser.links                                             # and a link to the file
    assert "report.json" in parser.links
    for heading in ("Executive summary", "Charts", "Savings by strategy", "Who spent it", "Key indicators",
                    "Alerts", "Anomalies and forecast"):
        assert heading in parser.headings


def test_report_numbers_agree_with_the_simulation(written):
    report, out = written
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["generator"] == "costlab report"
    s = lab.simulate(lab.load_scenario(SCENARIO), seed=0, requests=1500, progress=False).summary()
    assert numbers["overview"]["cost_usd"] == pytest.approx(s["cost_usd"], rel=1e-12)
    assert numbers["overview"]["baseline_cost_usd"] == pytest.approx(s["baseline_cost_usd"], rel=1e-12)
    assert sum(r["saved_usd"] for r in numbers["savings_by_strategy"]) == pytest.approx(
        s["baseline_cost_usd"] - s["cost_usd"], rel=1e-9)
    assert sum(r["cost_usd"] for r in numbers["attribution"]["tenant"]) == pytest.approx(s["cost_usd"], rel=1e-12)
    assert numbers["seeds"]["seeds"] == [0, 1] and numbers["seeds"]["headline"]["n"] == 2
    assert {a["rule"] for a in numbers["alerts"]["fired"]} >= {"budget 50%", "budget 80%", "budget 100%"}
    quality = numbers["anomalies"]["detector_quality_on_synthetic_spikes"]["zscore"]
    assert quality["precision"] > 0.9 and quality["recall"] > 0.9
    labels = [p["label"] for p in numbers["frontier"]]
    assert labels == ["no optimization", "cache only", "dedup only", "prompt cache only", "full pipeline"]
    assert set(numbers["charts"]) >= CHARTS
    summary = " ".join(numbers["executive_summary"])
    assert "cut the bill by" in summary and "a month" in summary and "Forecast" in summary


def test_cli_report_from_a_scenario_and_from_ledgers(tmp_path, capsys):
    out = tmp_path / "from-scenario"
    kpis = tmp_path / "kpis.toml"
    kpis.write_text('[[kpi]]\nname = "Retail cost / 1k"\nunit = "USD"\n'
                    'formula = \'1000 * sum(cost_usd where tenant == "retail") / count(tenant == "retail")\'\n')
    assert main(["report", SCENARIO, "--out", str(out), "--requests", "800", "--seeds", "1", "--no-frontier",
                 "--kpis", str(kpis)]) == 0
    assert "report written to" in capsys.readouterr().out
    assert (out / "report.html").is_file()
    assert (out / "kpi_retail_cost___1k.png").read_bytes().startswith(PNG)
    custom = next(k for k in json.loads((out / "report.json").read_text())["kpis"] if k["kpi"] == "Retail cost / 1k")
    assert custom["value"] > 0 and custom["status"] == "ok"
    for suffix in ("csv", "parquet"):
        ledger = tmp_path / f"ledger.{suffix}"
        assert main(["run", SCENARIO, "--requests", "800", "--ledger", str(ledger)]) == 0
        target = tmp_path / f"from-{suffix}"
        assert main(["report", str(ledger), "--out", str(target), "--sla-ms", "8000",
                     "--team", "retail=commerce", "--team", "travel=leisure"]) == 0
        numbers = json.loads((target / "report.json").read_text())
        assert numbers["source"]["kind"] == "ledger file"
        direct = json.loads((out / "report.json").read_text())
        assert numbers["overview"]["cost_usd"] == pytest.approx(direct["overview"]["cost_usd"], rel=1e-9)
        assert {r["team"] for r in numbers["attribution"]["team"]} == {"commerce", "leisure"}


def test_cli_report_refuses_to_clobber_a_directory_that_is_not_a_report(tmp_path, capsys):
    victim = tmp_path / "notes"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    assert main(["report", SCENARIO, "--out", str(victim), "--requests", "300", "--seeds", "1"]) == 2
    assert "is not a costlab report" in capsys.readouterr().err
    assert (victim / "precious.txt").read_text() == "keep me"
    assert main(["report", "README.md", "--out", str(tmp_path / "x")]) == 2
    assert main(["report", "missing.parquet", "--out", str(tmp_path / "x")]) == 2
    assert main(["report", SCENARIO, "--out", str(tmp_path / "x"), "--team", "retail"]) == 2


def test_rewriting_replaces_the_whole_report_and_a_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "rep"
    build_report(SCENARIO, seeds=1, requests=400, teams={"retail": "a"}, frontier=False).write(out)
    assert (out / "attribution_team.png").exists()
    second = build_report(SCENARIO, seeds=1, requests=500, frontier=False)
    second.write(out)
    assert not (out / "attribution_team.png").exists()                # a stale chart does not linger
    assert json.loads((out / "report.json").read_text())["overview"]["requests"] == 500
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    calls = {"n": 0}
    real_png = Chart.png

    def failing_png(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_png(self)

    third = build_report(SCENARIO, seeds=1, requests=600, frontier=False)
    monkeypatch.setattr(Chart, "png", failing_png)
    with pytest.raises(OSError, match="disk full"):
        third.write(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before     # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]              # no temporary directory left


def test_plots_draw_from_a_result_or_a_bare_ledger():
    r = lab.simulate(lab.load_scenario(SCENARIO), seed=0, requests=600, progress=False)
    for data in (r, r.ledger):
        figs = [plots.cost_over_time(data), plots.savings_waterfall(data), plots.latency_cdf(data, sla_ms=8000),
                plots.attribution_bars(data, "tenant"), plots.cost_quality_frontier(data)]
        for fig in figs:
            assert isinstance(fig, Figure) and fig.axes
    # the waterfall's bars: baseline, one per strategy, optimized
    ax = plots.savings_waterfall(r).axes[0]
    heights = [p.get_height() for p in ax.patches]
    s = r.summary()
    assert heights[0] == pytest.approx(s["baseline_cost_usd"]) and heights[-1] == pytest.approx(s["cost_usd"])
    assert sum(heights[1:-1]) == pytest.approx(s["baseline_cost_usd"] - s["cost_usd"])
    # the frontier keeps only undominated points
    frame = plots.pareto_front(__import__("pandas").DataFrame([
        {"label": "a", "cost_usd": 10, "quality": 1.0}, {"label": "b", "cost_usd": 5, "quality": 0.95},
        {"label": "c", "cost_usd": 7, "quality": 0.9}, {"label": "d", "cost_usd": 12, "quality": 1.0}]))
    assert list(frame["label"]) == ["b", "a"]
    assert Path(plots.__file__).name == "plots.py"
