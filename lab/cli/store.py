"""`costlab runs` and `costlab class progress`: the experiment store from the command line.

`costlab run SCENARIO --save NAME` saves a run (lab/cli/run.py); these commands list, show,
compare and export what was saved, and show a class's progress to its instructor. The store
is `~/.costlab/lab.db` unless `--store` or `$COSTLAB_STORE` names another (a class's PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import lab.store as lab_store
from lab.cli.table import print_table
from lab.fmt import number, share, usd
from lab.grading.store import Leaderboard
from lab.ledger import write_ledger


def _store(args) -> lab_store.Store:
    return lab_store.use(args.store)


def cmd_runs(args) -> int:
    frame = _store(args).runs(args.experiment, args.owner)
    if args.json:
        print(frame.to_json(orient="records"))
        return 0
    if frame.empty:
        print("no saved runs" + (f" in experiment {args.experiment!r}" if args.experiment else "")
              + " (save one with `costlab run SCENARIO --save NAME`)")
        return 0
    rows = [(str(r.run_id), r.experiment, r.kind, r.scenario, "-" if r.seed is None or r.seed != r.seed else
             str(int(r.seed)), f"{int(r.requests):,}", usd(r.cost_usd),
             "-" if r.reduction_pct is None else f"{r.reduction_pct:.1f} %", ",".join(r.tags), r.created_at[:19])
            for r in frame.itertuples()]
    print_table(rows, ("id", "experiment", "kind", "scenario", "seed", "requests", "cost", "reduction", "tags",
                       "saved (UTC)"), sys.stdout)
    return 0


def cmd_show(args) -> int:
    row = _store(args).row(args.id)
    if args.json:
        print(json.dumps({k: v for k, v in row.items() if k != "scenario_toml"}, indent=1, default=str))
        return 0
    s = row["summary"]
    print(f"run {row['id']} · experiment {row['experiment']} · {row['kind']} · owner {row['owner']} · "
          f"saved {row['created_at'][:19]} UTC")
    facts = [("scenario", row["scenario_name"] or "-"), ("seed", str(row["seed"])),
             ("requests", f"{row['requests']:,}"), ("costlab", row["costlab_version"]),
             ("prices as of", row["prices_as_of"]), ("scenario sha256", (row["scenario_sha256"] or "-")[:16]),
             ("ledger rows", f"{row['ledger_rows']:,}"), ("tags", ", ".join(row["tags"]) or "-"),
             ("note", row["note"] or "-")]
    if "cost_usd" in s:
        facts += [("cost", usd(s["cost_usd"]))]
    if "baseline_cost_usd" in s:
        facts += [("baseline cost", usd(s["baseline_cost_usd"])), ("reduction", f"{s['reduction_pct']:.1f} %"),
                  ("cache hit rate", share(s["cache_hit_rate"])),
                  ("latency p95", f"{s['latency_ms']['p95']:,.0f} ms")]
    print_table(facts, ("", ""), sys.stdout)
    return 0


def cmd_compare(args) -> int:
    comparison = _store(args).compare(args.a, args.b)
    table = comparison.table()
    if args.json:
        print(table.reset_index().to_json(orient="records"))
        return 0
    print(f"{comparison.candidate_name} vs {comparison.baseline_name}"
          f"{' (paired by seed)' if comparison.paired else ''}\n")
    rows = []
    for _metric, r in table.iterrows():
        ci = "" if not np.isfinite(r["ci_low"]) else f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]"
        sig = {True: "yes", False: "no", None: "n/a"}[r["significant"]]
        rows.append((f"{r['label']} ({r['unit']})", number(r["baseline"]), number(r["candidate"]),
                     f"{r['change_pct']:+.1f} %", ci, sig))
    print_table(rows, ("metric", "baseline", "candidate", "change", "95 % CI of change", "significant"), sys.stdout)
    return 0


def cmd_export(args) -> int:
    led = _store(args).ledger(args.id)
    write_ledger(led, args.ledger)
    print(f"ledger of run {args.id} ({len(led):,} rows) written to {args.ledger}")
    return 0


def _graded_passes(url: str) -> dict[tuple[str, str], bool]:
    """(student, challenge) -> passed, from the leaderboard in the database at `url` (if it has one)."""
    board = Leaderboard(url)
    try:
        subs = board.submissions()
    finally:
        board.close()
    return {(r.student, r.challenge): bool(r.passed) for r in subs.itertuples()} if len(subs) else {}


def cmd_class_progress(args) -> int:
    store = _store(args)
    table = store.class_progress()
    graded = _graded_passes(args.leaderboard or store.url)
    for (student, challenge), passed in graded.items():
        if student not in table.index or challenge not in table.columns or table.loc[student, challenge] != "passed":
            table.loc[student, challenge] = "passed" if passed else "graded"
    table = table.fillna("").sort_index().reindex(sorted(table.columns), axis=1)
    if args.json:
        print(table.reset_index(names="learner").to_json(orient="records"))
        return 0
    if table.empty:
        print("no progress recorded yet (learners' self-checks record it when COSTLAB_STORE names this store)")
        return 0
    items = list(table.columns)
    print_table([(owner, *(table.loc[owner, c] or "." for c in items)) for owner in table.index],
                ("learner", *items), sys.stdout)
    done = {c: int((table[c] == "passed").sum()) for c in items}
    print("\npassed: " + ", ".join(f"{c} {n}/{len(table)}" for c, n in done.items()))
    return 0


def _store_arg(p, *, under_runs: bool = False) -> None:
    # under `runs`, a subcommand's --store must not reset the one given before it
    p.add_argument("--store", metavar="URL", default=argparse.SUPPRESS if under_runs else None,
                   help="a store path or database URL (default $COSTLAB_STORE, else ~/.costlab/lab.db)")


def register(subparsers) -> None:
    """Add `runs` (list, show, compare, export) and `class progress` to the `costlab` command."""
    r = subparsers.add_parser("runs", help="list, show, compare and export saved runs",
                              description="The experiment store: runs saved with `costlab run ... --save NAME` "
                                          "or `result.save(NAME)` in a notebook.")
    _store_arg(r)
    r.add_argument("--experiment", metavar="NAME", help="only this experiment's runs")
    r.add_argument("--owner", metavar="NAME", help="only this learner's runs")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(func=cmd_runs)
    sub = r.add_subparsers(dest="runs_command", metavar="COMMAND")
    s = sub.add_parser("show", help="one run: scenario, seed, versions, the summary")
    s.add_argument("id", type=int)
    _store_arg(s, under_runs=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    c = sub.add_parser("compare", help="run B against run A: change, 95 %% CI, significance",
                       description="A and B are run ids or experiment names (all their runs, paired by seed).")
    c.add_argument("a", help="the baseline: a run id or an experiment name")
    c.add_argument("b", help="the candidate: a run id or an experiment name")
    _store_arg(c, under_runs=True)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)
    e = sub.add_parser("export", help="write a run's ledger to a .csv or .parquet file")
    e.add_argument("id", type=int)
    e.add_argument("--ledger", metavar="PATH", required=True, help="PATH.csv or PATH.parquet")
    _store_arg(e, under_runs=True)
    e.set_defaults(func=cmd_export)

    k = subparsers.add_parser("class", help="for an instructor: the class's progress from the class store")
    ksub = k.add_subparsers(dest="class_command", metavar="COMMAND", required=True)
    p = ksub.add_parser("progress", help="who has passed which lesson's self-check and tried which challenge")
    _store_arg(p)
    p.add_argument("--leaderboard", metavar="URL", default=None,
                   help="where graded submissions are (default: the store's own database, shared with it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_class_progress)
