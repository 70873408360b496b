"""`costlab grade`, `grade-all`, `leaderboard`, `challenges` and `class-init`: running a class.

Grading exits 0 whenever grading itself worked, whatever the score (a hostile notebook
scores 0 with a reason); 1 if the grader could not score a notebook; 2 for a user error
(unknown challenge, missing private seeds, bad URL).

`lab.grading` imports without the `grading` extra (papermill and nbformat load only when a
notebook is run or read), so this module imports it at the top; each command first checks the
extra is there and says which to install.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from lab.cli.table import print_table
from lab.errors import ConfigError
from lab.fmt import plain_text
from lab.grading._papermill import skip_iri_format_check
from lab.grading.batch import grade_all
from lab.grading.challenge import challenges_root, list_challenges, load_challenge
from lab.grading.grader import grade
from lab.grading.private import PrivateDir
from lab.grading.sandbox import Limits
from lab.grading.store import Leaderboard

ISOLATION_CHOICES = ("auto", "namespaces", "user-namespaces", "process")
GRADING_EXTRA = ("papermill", "nbformat", "sqlalchemy")


def _require_grading_extra() -> None:
    """One line instead of a traceback when the grading extra is not installed."""
    missing = [m for m in GRADING_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the grading commands need the grading extra (pip install 'costlab[grading]'); "
                          f"missing: {', '.join(missing)}")


def _limits(args):
    return Limits(timeout_s=args.timeout_s, memory_mb=args.memory_mb, max_processes=args.max_processes,
                  cpus=args.cpus)


def _grader_kwargs(args) -> dict:
    return {"private_dir": args.private_dir, "db": args.db, "limits": _limits(args), "isolation": args.isolation,
            "daily_limit": args.daily_limit}


def _print_result(r: dict, out=None) -> None:
    out = sys.stdout if out is None else out     # the stdout of the moment (a test may redirect it)
    student = plain_text(r.get("student"))           # learner-supplied text never reaches the terminal raw
    who = plain_text(r.get("pseudonym") or student)
    print(f"{plain_text(r['challenge'])} · {student} ({who}): score {r['score']:.2f} [{plain_text(r['status'])}]",
          file=out)
    print(f"  {plain_text(r['reason'])}", file=out)
    m = r.get("metrics") or {}
    if m:
        print(f"  private seeds: reduction {m['reduction_pct']:.2f} % · p95 {m['p95_ms']:,.0f} ms · quality "
              f"{m['quality_min']:.4f} · failed {m['error_rate_max']:.4f}", file=out)
    if r.get("public"):
        print(f"  public seeds: score {r['public']['score']:.2f}", file=out)
    if r.get("badges"):
        print(f"  badges: {plain_text(', '.join(r['badges']))}", file=out)
    iso = r.get("isolation") or {}
    if iso:
        print(f"  isolation: {iso.get('mode')} · network {iso.get('network')}", file=out)
    t = r.get("timing_s") or {}
    if t:
        print(f"  time: notebook {t.get('notebook', 0):.1f} s · evaluation {t.get('evaluation', 0):.1f} s · "
              f"total {t.get('total', 0):.1f} s", file=out)


def cmd_grade(args) -> int:
    _require_grading_extra()
    skip_iri_format_check()                  # before nbformat first loads: ~2 s of imports never needed

    submission = Path(args.submission)
    if not submission.is_file():
        raise ConfigError(f"{submission}: no such notebook")
    output = args.output or submission.with_name(f"{submission.stem}.graded.ipynb")
    result = grade(submission, args.challenge, args.student, output=output, json_path=args.json,
                   keep_scratch=args.keep_scratch, **_grader_kwargs(args))
    _print_result(result.as_dict())
    if result.executed_notebook:
        print(f"  executed notebook: {result.executed_notebook}")
    if args.json:
        print(f"  result: {args.json}")
    return 1 if result.status == "error" else 0


def cmd_grade_all(args) -> int:
    _require_grading_extra()
    skip_iri_format_check()

    results = grade_all(args.folder, args.challenge, out=args.out, workers=args.workers, **_grader_kwargs(args))
    if not results:
        print(f"no notebooks found under {args.folder}")
        return 0
    rows = [(plain_text(r.get("student", "?")), plain_text(r.get("status", "?")), f"{r.get('score', 0):.2f}",
             plain_text(r.get("reason") or "", 70),
             f"{(r.get('timing_s') or {}).get('total', 0):.1f}") for r in results]
    print()
    print_table(rows, ("student", "status", "score", "reason", "seconds"))
    out = Path(args.out) if args.out else Path(args.folder) / "graded"
    print(f"\nexecuted notebooks, results and summary.csv in {out}")
    return 1 if any(r.get("status") == "error" for r in results) else 0


def _store(args):
    return Leaderboard(args.db or PrivateDir.locate(args.private_dir).default_db_url)


def cmd_leaderboard(args) -> int:
    _require_grading_extra()
    store = _store(args)
    if args.student:
        frame = store.progress(args.student)
        title = f"progress of {plain_text(args.student)} ({store.pseudonym(args.student) or 'no submissions yet'})"
    else:
        if not args.challenge:
            raise ConfigError("give a challenge id (or --student NAME for one student's progress)")
        view = store.view(args.challenge, private=args.private)
        if view.frame.empty:
            load_challenge(args.challenge)   # a typo is an unknown challenge (exit 2), not "no submissions yet"
        frame = view.frame
        title = f"{args.challenge} · {view.kind} leaderboard"
        if args.html:
            Path(args.html).write_text(view.to_html(), encoding="utf-8")
            print(f"wrote {args.html}")
    if args.csv:
        frame.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.json:
        print(frame.to_json(orient="records", indent=1))
        return 0
    print(title + "\n")
    if frame.empty:
        print("(no submissions yet)")
        return 0
    shown = frame.copy()
    if "badges" in shown:
        shown["badges"] = shown["badges"].map(lambda b: ", ".join(b))
    rows = [tuple(f"{v:.2f}" if isinstance(v, float) else plain_text(v) for v in row)
            for row in shown.itertuples(index=False)]
    print_table(rows, tuple(shown.columns))
    return 0


def cmd_challenges(args) -> int:
    _require_grading_extra()

    chs = list_challenges(args.root)
    if args.json:
        print(json.dumps([c.describe() for c in chs], indent=1))
        return 0
    rows = [(c.id, c.level, f"{c.goal.target_reduction_pct:g} %", f"{c.goal.sla_p95_ms:,.0f}",
             f"{c.goal.quality_floor:g}", c.title) for c in chs]
    print_table(rows, ("id", "level", "target", "p95 SLA ms", "quality", "title"))
    return 0


def cmd_class_init(args) -> int:
    _require_grading_extra()

    private = PrivateDir.locate(args.private_dir)
    private.ensure_outside(challenges_root().parent)
    chs = list_challenges()
    seeds = private.init([c.id for c in chs], seeds_per_challenge=args.seeds)
    store = Leaderboard(args.db or private.default_db_url)
    print(f"private folder {private.path} (mode 700): private seeds for {len(seeds)} challenges in "
          f"{private.seeds_file.name} (mode 600)")
    print(f"leaderboard: {store!r}")
    print(f"\nnext: export COSTLAB_PRIVATE_DIR={private.path}\n"
          f"      costlab grade alice.ipynb --challenge {chs[0].id if chs else 'ID'} --student alice")
    return 0


def _add_grading_options(p) -> None:
    p.add_argument("--db", metavar="URL", help="leaderboard database: a SQLAlchemy URL (sqlite:///path.db, "
                   "postgresql://user@host/db) or a path; default: leaderboard.db in the private folder")
    p.add_argument("--private-dir", metavar="DIR", help="the instructor's private folder (private seeds, default "
                   "database); default $COSTLAB_PRIVATE_DIR. Must be outside the learners' tree")
    p.add_argument("--timeout-s", type=float, default=120.0, metavar="S",
                   help="a cell running longer is stopped; the whole run is killed 20 s later (default 120)")
    p.add_argument("--memory-mb", type=int, default=2048, metavar="MB",
                   help="address-space limit of each process, and the memory limit of the run's cgroup (all its "
                        "processes together; default 2048)")
    p.add_argument("--max-processes", type=int, default=256, metavar="N",
                   help="processes and threads the run's cgroup may hold at once (default 256)")
    p.add_argument("--cpus", type=float, default=1.0, metavar="N",
                   help="CPU time of the run's cgroup, in cores (default 1)")
    p.add_argument("--isolation", choices=ISOLATION_CHOICES, default="auto",
                   help="auto: namespaces when allowed (no network, private folders hidden, read-only "
                        "filesystem), else a plain process (the result says which)")
    p.add_argument("--daily-limit", type=int, default=None, metavar="N",
                   help="submissions per student per UTC day for this challenge (default: the challenge's; 0 = none)")


def register(subparsers) -> None:
    """Add the grading commands to `costlab`."""
    g = subparsers.add_parser(
        "grade", help="grade one challenge notebook: run it sandboxed, score its policy on private seeds",
        description="Run the notebook with papermill in a sandbox (no network, private folder hidden, timeout, "
                    "memory limit), read the policy it submitted, simulate it on the challenge's private seeds "
                    "and record the score. A broken or hostile notebook scores 0 with a reason; the exit status "
                    "is 0 whenever grading worked.")
    g.add_argument("submission", help="the learner's notebook (.ipynb)")
    g.add_argument("--challenge", required=True, metavar="ID", help="challenge id (`costlab challenges` lists them)")
    g.add_argument("--student", required=True, metavar="NAME", help="the learner's name (shown only privately)")
    g.add_argument("--json", metavar="PATH", help="write the result (score, constraints_met, metrics, reason, ...)")
    g.add_argument("--output", metavar="PATH", help="executed notebook (default: SUBMISSION.graded.ipynb)")
    g.add_argument("--keep-scratch", action="store_true", help="keep the scratch folder for debugging")
    _add_grading_options(g)
    g.set_defaults(func=cmd_grade)

    a = subparsers.add_parser(
        "grade-all", help="grade a folder of notebooks in parallel processes",
        description="Grade DIR/STUDENT.ipynb or DIR/STUDENT/*.ipynb, several at a time, with a progress bar; "
                    "executed notebooks, JSON results and summary.csv go to --out (default DIR/graded).")
    a.add_argument("folder", help="folder of submissions")
    a.add_argument("--challenge", required=True, metavar="ID")
    a.add_argument("--out", metavar="DIR", help="where results go (default FOLDER/graded)")
    a.add_argument("--workers", type=int, default=None, metavar="N", help="parallel graders (default: CPU count)")
    _add_grading_options(a)
    a.set_defaults(func=cmd_grade_all)

    lb = subparsers.add_parser(
        "leaderboard", help="show a challenge's leaderboard or a student's progress",
        description="Public view (default): pseudonyms ranked by their best public-seed score, what learners may "
                    "see. --private: real names ranked by the private-seed score that counts (instructor only).")
    lb.add_argument("challenge", nargs="?", help="challenge id")
    lb.add_argument("--private", action="store_true", help="the private view (names, private-seed scores)")
    lb.add_argument("--student", metavar="NAME", help="one student's progress and badges across challenges")
    lb.add_argument("--db", metavar="URL", help="leaderboard database (default: the private folder's)")
    lb.add_argument("--private-dir", metavar="DIR", help="default $COSTLAB_PRIVATE_DIR")
    lb.add_argument("--html", metavar="PATH", help="also write the view as an HTML page (publish the public one)")
    lb.add_argument("--csv", metavar="PATH", help="also write it as CSV")
    lb.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    lb.set_defaults(func=cmd_leaderboard)

    c = subparsers.add_parser("challenges", help="list the graded challenges and their goals")
    c.add_argument("--root", metavar="DIR", help="challenges folder (default: the repository's challenges/)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_challenges)

    i = subparsers.add_parser(
        "class-init", help="prepare a class: private seeds for every challenge and the leaderboard database",
        description="Create the private folder (mode 700) outside the learners' tree, draw private seeds for every "
                    "challenge that has none (seeds.toml, mode 600) and create the leaderboard tables.")
    i.add_argument("--private-dir", metavar="DIR", help="default $COSTLAB_PRIVATE_DIR")
    i.add_argument("--db", metavar="URL", help="leaderboard database (default: leaderboard.db in the private folder)")
    i.add_argument("--seeds", type=int, default=5, metavar="N", help="private seeds per challenge (default 5)")
    i.set_defaults(func=cmd_class_init)
