"""Eight graders, one learner, one database, a daily limit of 3: exactly 3 rows, and the rest learn nothing.

Eight forked processes each build a `Grader` on the same SQLite file (or the PostgreSQL named by
COSTLAB_TEST_POSTGRES_URL), wait at a barrier, then grade the same learner at once. The
notebook run is replaced by the grader's own scoring of a fixed policy (the sandbox is tested
in test_sandbox*.py), so all eight pass the early daily-limit check and race at insert time,
where the limit is enforced in one transaction. Expected: 3 recorded rows with the 3 graded
results' ids (none lost, none doubled) and 5 rejections whose JSON and graded notebook hold no
private- or public-seed numbers.
"""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path

import nbformat
import pytest
import sqlalchemy as sa

from lab.grading import Grader, Leaderboard, PrivateDir
from lab.grading.policy_schema import parse_policy
from lab.grading.store import metadata, normalize_url

CHALLENGE = "b1-first-cache"
GRADERS, DAILY_LIMIT = 8, 3
PG_ENV = "COSTLAB_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'leaderboard.db'}"
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql:///costlab_test) to test on PostgreSQL")
    engine = sa.create_engine(normalize_url(url))
    metadata.drop_all(engine)
    engine.dispose()
    return url


def _grade(url: str, private: str, nb: str, out: str, k: int, barrier) -> None:
    grader = Grader(CHALLENGE, private_dir=private, db=url, daily_limit=DAILY_LIMIT)
    policy = parse_policy({"pipeline": [{"stage": "cache", "shared": True}]}, grader.challenge)

    def scored_without_a_notebook(result, notebook, learner_folders=()):
        grader._score(result, policy)
        return nbformat.v4.new_notebook()

    grader._run_and_score = scored_without_a_notebook
    barrier.wait(timeout=120)
    grader.grade(nb, "Alice", output=Path(out) / f"{k}.graded.ipynb", json_path=Path(out) / f"{k}.json")


def test_eight_concurrent_graders_record_exactly_the_daily_limit(db_url, tmp_path):
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir()
    private = tmp_path / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=1)
    nb = tmp_path / "alice.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), nb)
    out = tmp_path / "out"
    out.mkdir()
    Leaderboard(db_url).close()                   # tables made once, before the race
    ctx = get_context("fork")
    barrier = ctx.Barrier(GRADERS)
    procs = [ctx.Process(target=_grade, args=(db_url, str(private), str(nb), str(out), k, barrier))
             for k in range(GRADERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * GRADERS
    results = [json.loads((out / f"{k}.json").read_text()) for k in range(GRADERS)]
    graded = [r for r in results if r["status"] == "graded"]
    rejected = [r for r in results if r["status"] == "rejected"]
    rows = Leaderboard(db_url).submissions(CHALLENGE, "alice")
    assert len(graded) == DAILY_LIMIT and len(rejected) == GRADERS - DAILY_LIMIT
    assert sorted(rows["submission_id"]) == sorted(r["submission_id"] for r in graded)   # none lost or doubled
    assert all(r["student"] == "alice" for r in results)                                 # one spelling
    for k, r in enumerate(results):
        if r["status"] != "rejected":
            continue
        assert "daily limit" in r["reason"] or "all 3 submissions" in r["reason"]
        assert r["metrics"] == {} and r["public"] == {} and r["score"] == 0 and r["constraints"] == {}
        last = nbformat.read(out / f"{k}.graded.ipynb", as_version=4).cells[-1].source
        assert "rejected" in last and "private seeds):" not in last and "worst seed:" not in last   # no metric lines
