"""`costlab twin` (calibrate a digital twin from a trace and check it) and `costlab project` (cost ahead).

User-fixable problems (a missing file, a corrupt row, a bad option) are CostlabErrors: one
line, exit 2.
"""

from __future__ import annotations

import tomllib

from lab import twin
from lab.cli.args import factors, positive_int
from lab.errors import ConfigError
from lab.files import write_text_atomic
from lab.loader import load_scenario, scenario_from_dict
from lab.projections import project, scale_analysis
from lab.runs import seed_metrics

DEFAULT_SEEDS = 5


def _split_model(spec: str | None) -> tuple[str | None, str | None]:
    if not spec:
        return None, None
    if "/" not in spec:
        raise ConfigError(f"--model {spec}: expected PROVIDER/MODEL, e.g. openai/gpt-4o-mini")
    provider, model = spec.split("/", 1)
    return provider, model


def _positive_seeds(n: int) -> int:
    if n < 1:
        raise ConfigError(f"--seeds: expected a whole number >= 1, got {n}")
    return n


def cmd_twin(args) -> int:
    seeds = _positive_seeds(args.seeds)
    provider, model = _split_model(args.model)
    cal = twin.fit(args.trace, args.format, provider=provider, model=model, concurrency=args.concurrency,
                   sla_p95_ms=args.sla_p95_ms, name=args.name)
    s = cal.source
    print(f"costlab twin · {s.label} · {len(s):,} requests over {s.span_s:,.0f} s ({s.rate_per_s:.3f} req/s)\n")
    print("Calibration:")
    for note in cal.notes:
        print(f"- {note}")
    print()
    print(twin.validate(cal.scenario, s, seeds=seeds))
    if args.out:
        text = twin.scenario_toml(cal.scenario_dict, header=cal.story())
        scenario_from_dict(tomllib.loads(text), path=args.out)   # what we write must load
        write_text_atomic(args.out, text)
        print(f"\ncalibrated scenario written to {args.out}; try `costlab run {args.out}` after adding "
              "[[pipeline]] stages")
    return 0


def cmd_project(args) -> int:
    seeds = _positive_seeds(args.seeds)
    scenario = load_scenario(args.scenario)
    runs = seed_metrics(scenario, seeds, args.requests, progress=True)
    print(project(scenario, growth_per_month=args.growth, runs=runs))
    if args.scale:
        print()
        print(scale_analysis(scenario, args.scale, seeds=min(seeds, 3), max_requests=args.max_requests,
                             progress=True))
    return 0


def register(subparsers) -> None:
    """Add `twin` and `project` to the `costlab` command."""
    t = subparsers.add_parser(
        "twin", help="calibrate a digital twin from a trace, print twin vs trace, write it as a scenario",
        description="Read a recorded trace (or a costlab ledger), fit a scenario that behaves like it "
                    "(arrival profile and burstiness, token lengths, duplicates, prefix reuse), and print "
                    "how closely the twin reproduces the trace, with relative errors. The twin is a "
                    "scenario like any other: add [[pipeline]] stages and run it, or ask lab.twin.what_if.")
    t.add_argument("trace", help="trace file: Azure CSV, Mooncake JSONL, costlab generic CSV, or a ledger "
                                 "(.csv/.parquet from `costlab run --ledger`)")
    t.add_argument("--format", choices=("azure", "mooncake", "csv", "ledger"),
                   help="trace format (default: guessed from the file name and header)")
    t.add_argument("--out", metavar="SCENARIO.toml", help="write the calibrated scenario here (TOML)")
    t.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                   help=f"twin streams to average in the validation table (default {DEFAULT_SEEDS})")
    t.add_argument("--model", metavar="PROVIDER/MODEL",
                   help="model the twin is served and priced by (default: the ledger's, else openai/gpt-4o-mini)")
    t.add_argument("--concurrency", type=int, metavar="N", help="provider slots (default: sized from the peak rate)")
    t.add_argument("--sla-p95-ms", type=float, metavar="MS", help="write [sla] p95_ms into the scenario")
    t.add_argument("--name", help="scenario name (default: twin-<trace file name>)")
    t.set_defaults(func=cmd_twin)

    p = subparsers.add_parser(
        "project", help="project a scenario's cost per day/week/month/year, and at x10, x100 traffic",
        description="Run a scenario over several seeds and project its cost (baseline and optimized) per "
                    "day, week, month and year with 95 %% confidence intervals, optionally with monthly "
                    "traffic growth; --scale adds cost, p95 and errors at multiples of today's traffic and "
                    "where p95 breaks the scenario's SLA.")
    p.add_argument("scenario", help="a scenario file (scenarios/*.toml)")
    p.add_argument("--seeds", type=positive_int, default=DEFAULT_SEEDS, metavar="N", help="runs to average (default 5)")
    p.add_argument("--growth", type=float, default=0.0, metavar="FRACTION",
                   help="traffic growth per month, compounded (0.05 = 5 %% a month; default 0)")
    p.add_argument("--requests", type=positive_int, metavar="N", help="requests per run (default: the scenario's size)")
    p.add_argument("--scale", type=factors, metavar="F1,F2,...", help="traffic factors for a scale analysis, e.g. 1,10,100")
    p.add_argument("--max-requests", type=int, default=50_000, metavar="N",
                   help="cap on requests per scale-analysis run (default 50,000)")
    p.set_defaults(func=cmd_project)
