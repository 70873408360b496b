"""`costlab report`: a cost report (HTML + PNG charts + JSON) for a scenario or a recorded ledger.

Errors a user can fix (a bad file, a bad --team, an --out directory that is not a report)
are CostlabErrors: one line, exit 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from lab import twin
from lab.analysis.kpi import load_kpis
from lab.cli.args import positive_int
from lab.errors import ConfigError
from lab.loader import load_scenario
from lab.report import build_report, check_output_dir

RECOMMEND_REQUESTS = 20_000    # per what-if run: costs scale to a day, so a shorter window ranks the same pipelines
PERIODS_S = {"day": 86400.0, "week": 7 * 86400.0, "month": 30 * 86400.0}


def _teams(pairs: list[str] | None) -> dict[str, str] | None:
    """--team retail=commerce --team travel=leisure -> {'retail': 'commerce', 'travel': 'leisure'}."""
    if not pairs:
        return None
    teams = {}
    for pair in pairs:
        tenant, sep, team = pair.partition("=")
        if not sep or not tenant.strip() or not team.strip():
            raise ConfigError(f"--team {pair!r}: expected TENANT=TEAM, e.g. --team retail=commerce")
        teams[tenant.strip()] = team.strip()
    return teams


def cmd_report(args) -> int:
    check_output_dir(args.out)          # before minutes of simulation, not after
    teams = _teams(args.team)
    kpis = None
    if args.kpis:
        kpis = load_kpis(args.kpis)
    period_s = PERIODS_S[args.budget_period]
    recommendation = None if args.no_recommend else _recommendation(args)
    report = build_report(args.source, seed=args.seed, seeds=args.seeds, requests=args.requests,
                          sla_ms=args.sla_ms, budget_usd=args.budget_usd, budget_period_s=period_s,
                          teams=teams, bucket_s=args.bucket_s, frontier=not args.no_frontier, kpis=kpis,
                          progress=True, recommendation=recommendation)
    out = report.write(args.out)
    print(report.title)
    print()
    for line in report.numbers["executive_summary"]:
        print(f"- {line}")
    print()
    charts = ", ".join(c.file for c in report.charts)
    print(f"report written to {out}/report.html (numbers in report.json; charts: {charts})")
    return 0


def _recommendation(args):
    """For a scenario: the pipeline as configured, each of its stages alone and none, ranked by lab.twin.recommend."""
    path = Path(args.source)
    if path.suffix != ".toml":
        return None                      # a ledger cannot be re-run with other pipelines
    stages = tomllib.loads(path.read_text(encoding="utf-8")).get("pipeline", [])
    if not stages:
        return None
    policies = {"as configured": stages, **{f"{s['stage']} alone": [s] for s in stages if len(stages) > 1}, "none": []}
    requests = min(args.requests or RECOMMEND_REQUESTS, RECOMMEND_REQUESTS)
    whatif = twin.what_if(load_scenario(path), policies, seeds=range(args.seed, args.seed + min(args.seeds, 3)),
                          requests=requests, progress=True)
    return twin.recommend(whatif, sla_p95_ms=args.sla_ms)


def register(subparsers) -> None:
    """Add `report` to the `costlab` command."""
    r = subparsers.add_parser(
        "report", help="write a cost report (HTML, PNG charts, JSON) for a scenario or a ledger",
        description="Simulate a scenario (on --seeds seeds, for confidence intervals) or read a ledger written "
                    "by `costlab run --ledger`, and write a self-contained report to DIR: an executive summary, "
                    "savings by strategy, cost by tenant/team/feature/model, KPIs, alerts, cost anomalies, a "
                    "forecast and charts (report.html), plus every number in report.json.",
        epilog="Example: costlab report scenarios/support-chatbot.toml --out report --budget-usd 250 "
               "--team retail=commerce --team travel=leisure")
    r.add_argument("source", metavar="RUN_OR_SCENARIO",
                   help="a scenario .toml, or a ledger .csv/.parquet from `costlab run --ledger`")
    r.add_argument("--out", required=True, metavar="DIR",
                   help="directory to write (replaced as a whole; must be new, empty or an earlier report)")
    r.add_argument("--seed", type=int, default=0, help="first random seed (default 0)")
    r.add_argument("--seeds", type=int, default=3, metavar="K",
                   help="simulate seeds SEED..SEED+K-1 for 95%% confidence intervals (default 3; 1 for a quick look)")
    r.add_argument("--requests", type=positive_int, default=None, metavar="N",
                   help="simulate exactly N requests instead of the scenario's duration_s")
    r.add_argument("--sla-ms", type=float, default=None, metavar="MS",
                   help="latency target (default: the scenario's [sla] p95_ms; needed for a ledger's SLA alerts)")
    r.add_argument("--budget-usd", type=float, default=None, metavar="X",
                   help="spend budget per --budget-period: alerts at 50/80/100%% (default: no budget alerts)")
    r.add_argument("--budget-period", choices=sorted(PERIODS_S), default="day",
                   help="the budget's period (default day)")
    r.add_argument("--team", action="append", metavar="TENANT=TEAM",
                   help="map a tenant to a team for a by-team breakdown (repeat for each tenant)")
    r.add_argument("--bucket-s", type=float, default=None, metavar="S",
                   help="time bucket for charts, anomalies and the forecast (default: about 60 buckets)")
    r.add_argument("--kpis", metavar="FILE.toml",
                   help="extra KPIs: [[kpi]] tables with name, formula (e.g. \"1000 * sum(cost_usd) / count()\"), "
                        "unit, warning, critical; each gets a row and a chart")
    r.add_argument("--no-recommend", action="store_true",
                   help="skip the Recommendations section (the pipeline, each stage alone and none, on up to 3 seeds)")
    r.add_argument("--no-frontier", action="store_true",
                   help="skip the extra one-stage-at-a-time runs behind the cost-quality chart")
    r.set_defaults(func=cmd_report)
