"""Grading one submission: wall time of `lab.grading.grade` on a challenge's own template notebook.

The submission is the challenge's template.ipynb as a learner first gets it (its pipeline cell
holds a working starting policy), graded the way `costlab grade` does it: papermill in the
sandbox (isolation "auto": namespaces when root or user namespaces allow, else a plain process),
then the grader's own simulation of the policy on the private seeds (5 per challenge, as
`costlab class-init` writes them) and the public seeds, and the leaderboard insert. The private
folder and SQLite leaderboard are made in a temporary folder. Bar (issue 16): under 10 s.
Prints the figures, then one JSON object.

    python benchmarks/grading.py [--challenge b1-first-cache | --all]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from lab.grading import PrivateDir, grade, list_challenges, load_challenge

BAR_S = 10.0
SEEDS_PER_CHALLENGE = 5


def grade_template(challenge_id: str, work: Path) -> dict:
    challenge = load_challenge(challenge_id)
    private = work / "private"
    PrivateDir(private).init([challenge_id], seeds_per_challenge=SEEDS_PER_CHALLENGE)
    submission = work / "submissions" / f"{challenge_id}.ipynb"
    submission.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(challenge.path).parent / "template.ipynb", submission)
    start = time.perf_counter()
    result = grade(submission, challenge, "benchmark", private_dir=private, daily_limit=0)
    wall_s = time.perf_counter() - start
    return {"challenge": challenge_id, "wall_s": wall_s, "status": result.status, "score": result.score,
            "timing_s": dict(result.timing_s), "isolation_mode": result.isolation.get("mode")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--challenge", default="b1-first-cache", help="challenge id (default b1-first-cache)")
    which.add_argument("--all", action="store_true", help="every challenge, one after the other")
    args = parser.parse_args()
    ids = [c.id for c in list_challenges()] if args.all else [args.challenge]
    figures = []
    with tempfile.TemporaryDirectory(prefix="costlab-grading-bench-") as tmp:
        for cid in ids:
            f = grade_template(cid, Path(tmp) / cid)
            figures.append(f)
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in f["timing_s"].items() if k != "total")
            print(f"{cid:<26} {f['wall_s']:6.2f} s  (bar < {BAR_S:g} s: {'met' if f['wall_s'] < BAR_S else 'MISSED'})"
                  f"  {f['status']}, score {f['score']:.1f}, isolation {f['isolation_mode']}; {parts}", flush=True)
    worst = max(f["wall_s"] for f in figures)
    print(json.dumps({"benchmark": "grading", "bar_s": BAR_S, "worst_wall_s": worst, "meets": worst < BAR_S,
                      "results": figures}))


if __name__ == "__main__":
    main()
