"""`costlab sweep`: run a scenario over a grid of parameter values and seeds, in parallel.

A bad grid path, value or option is a CostlabError: one line naming it, exit 2, and
nothing runs.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

from lab.cli.args import positive_int
from lab.cli.table import print_table
from lab.errors import ConfigError
from lab.files import atomic_path
from lab.sweep import read_grid, sweep

DEFAULT_SEEDS = 5
#: metrics the printed table shows (the CSV has every metric of the summary)
SHOWN = (("cost_usd", "cost $", "{:.4f}"), ("reduction_pct", "reduction %", "{:.1f}"),
         ("latency_ms.p95", "p95 ms", "{:,.0f}"), ("sla_violation_rate", "over SLA", "{:.2%}"),
         ("error_rate", "errors", "{:.2%}"))


def write_csv_atomic(frame, path: str | Path) -> None:
    """Write the whole CSV or nothing: a crash never leaves half a table behind."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _at_least_one(name: str, n: int | None) -> int | None:
    if n is not None and n < 1:
        raise ConfigError(f"{name}: expected a whole number >= 1, got {n}")
    return n


def _cell(row, metric: str, fmt: str) -> str:
    mean, low, high = (row.get(f"{metric}.{s}") for s in ("mean", "ci95_low", "ci95_high"))
    if mean is None or mean != mean:
        return "-"
    text = fmt.format(mean)
    if low == low and high == high and low is not None:
        text += " ± " + fmt.format((high - low) / 2).lstrip()
    return text


def print_sweep(table, out=None) -> None:
    """The grid points with the main metrics as mean ± 95 % CI half-width."""
    grid = list(table.attrs.get("grid", []))
    shown = [(m, h, f) for m, h, f in SHOWN if f"{m}.mean" in table.columns]
    rows = []
    for row in table.to_dict("records"):
        rows.append([str(row[p]) for p in grid] + [str(row["seeds"])] + [_cell(row, m, f) for m, _, f in shown])
    kwargs = {} if out is None else {"out": out}
    print_table(rows, grid + ["seeds"] + [h for _, h, _ in shown], **kwargs)


def cmd_sweep(args) -> int:
    _at_least_one("--seeds", args.seeds)
    _at_least_one("--workers", args.workers)
    _at_least_one("--requests", args.requests)
    grid = read_grid(args.grid)
    client = None
    if args.dask:
        try:
            from distributed import Client  # the optional `dask` extra; local sweeps never need it
        except ImportError:
            raise ConfigError("--dask: dask.distributed is not installed (pip install 'dask[distributed]')") from None
        try:
            client = Client(args.dask, timeout="10s")
        except OSError as exc:
            raise ConfigError(f"--dask {args.dask}: cannot reach the scheduler ({exc})") from None
    try:
        table = sweep(args.scenario, grid, seeds=args.seeds, client=client, requests=args.requests,
                      workers=args.workers)
    finally:
        if client is not None:
            client.close()
    where = f"Dask scheduler {args.dask}" if args.dask else f"{args.workers or os.cpu_count()} local process(es)"
    print(f"costlab sweep · {table.attrs['scenario']} · {len(table)} grid point(s) x {args.seeds} seed(s) "
          f"on {where} · mean ± 95 % CI half-width\n")
    print_sweep(table)
    if args.out:
        write_csv_atomic(table, args.out)
        print(f"\nall metrics (mean, ci95_low, ci95_high per grid point) written to {args.out}")
    return 0


def register(subparsers) -> None:
    """Add `sweep` to the `costlab` command."""
    s = subparsers.add_parser(
        "sweep", help="run a scenario over a grid of parameter values and seeds, with 95 %% CIs",
        description=textwrap.fill(
            "Run every combination of the grid's values, each on --seeds seeds, in local processes (or on a "
            "Dask cluster with --dask), and print one row per combination with the mean and the 95 % confidence "
            "interval (Student t over the seeds) of cost, reduction, p95 latency, SLA violations and errors. "
            "The grid file is TOML: dotted paths into the scenario file, each with a list of values:", 88)
        + '\n\n  "pipeline[0].capacity" = [100, 1000, 10000]\n  "traffic.arrivals.rate_per_s" = [5, 10, 20]\n\n'
        + "A list item is picked by index or by its stage/provider name: pipeline[cache].ttl_s.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("scenario", help="a scenario file (scenarios/*.toml)")
    s.add_argument("--grid", required=True, metavar="FILE.toml", help="the grid: dotted path = [values, ...]")
    s.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                   help=f"seeds per grid point, 0..N-1 (default {DEFAULT_SEEDS}); 2 or more give an interval")
    s.add_argument("--workers", type=int, metavar="N", help="local processes (default: one per core)")
    s.add_argument("--requests", type=positive_int, metavar="N", help="requests per run (default: the scenario's size)")
    s.add_argument("--out", metavar="CSV", help="write every metric's mean and CI per grid point here")
    s.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler (tcp://host:8786) instead")
    s.set_defaults(func=cmd_sweep)
