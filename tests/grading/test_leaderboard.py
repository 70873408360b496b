"""The leaderboard store on SQLite and, when COSTLAB_TEST_POSTGRES_URL is set, on a real PostgreSQL.

`.ci/run` installs and starts Debian's PostgreSQL and sets the variable; on a laptop without a
server the PostgreSQL cases are skipped and the SQLite ones still run.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context

import pytest
import sqlalchemy as sa

from lab.db import normalize_url
from lab.grading.store import Leaderboard, Submission, SubmissionLimitReached, metadata

PG_ENV = "COSTLAB_TEST_POSTGRES_URL"
GRADERS, PER_GRADER = 8, 25


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leaderboard.db'}"
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql:///costlab_test) to test on PostgreSQL")
    engine = sa.create_engine(normalize_url(url))
    metadata.drop_all(engine)            # a clean schema for each test
    engine.dispose()
    return url


def sub(student, score, challenge="c1", public=None, badges=(), at=None, **kw):
    return Submission(challenge=challenge, student=student, score=score, constraints_met=score > 0,
                      passed=score >= 50, reason="r", metrics={"reduction_pct": score}, badges=list(badges),
                      public_score=score if public is None else public, submitted_at=at, **kw)


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_best_score_per_student_ranks_and_views(db_url):
    store = Leaderboard(db_url)
    store.record(sub("alice", 40.0, at=T0, badges=["first"]))
    store.record(sub("alice", 62.5, public=60.0, at=T0 + timedelta(minutes=1), badges=["target"]))
    store.record(sub("alice", 0.0, at=T0 + timedelta(minutes=2)))          # a later hostile 0 changes nothing
    store.record(sub("bob", 62.5, public=61.0, at=T0 + timedelta(minutes=3)))   # ties alice, later
    store.record(sub("carol", 55.0, public=70.0, at=T0 + timedelta(minutes=4)))
    private = store.standings("c1", "private")
    assert list(private["student"]) == ["alice", "bob", "carol"]          # tie broken by the earlier best
    assert list(private["rank"]) == [1, 2, 3]
    assert list(private["score"]) == [62.5, 62.5, 55.0]
    assert private.iloc[0]["submissions"] == 3 and private.iloc[0]["badges"] == ["first", "target"]
    public = store.standings("c1", "public")
    assert "student" not in public.columns                                  # learners see pseudonyms only
    assert list(public["public_score"]) == [70.0, 61.0, 60.0]               # public view ranks public scores
    assert list(public["pseudonym"]) == [store.pseudonym(s) for s in ("carol", "bob", "alice")]
    assert "<table" in store.view("c1")._repr_html_() and "alice" not in store.view("c1").to_html()
    assert "alice" in store.view("c1", private=True).to_html()


def test_pseudonyms_are_unique_and_stable(db_url):
    store = Leaderboard(db_url)
    for k in range(30):
        store.record(sub(f"s{k}", 1.0, challenge="c1"))
    store.record(sub("s0", 2.0, challenge="c2"))
    names = [store.pseudonym(f"s{k}") for k in range(30)]
    assert len(set(names)) == 30 and all(n.count("-") == 2 for n in names)
    assert store.standings("c2", "public").iloc[0]["pseudonym"] == names[0]


def test_daily_limit_per_student_and_challenge(db_url):
    store = Leaderboard(db_url)
    for k in range(3):
        store.record(sub("alice", 10.0 + k, at=T0 + timedelta(hours=k)), daily_limit=3)
    with pytest.raises(SubmissionLimitReached, match="all 3 submissions for c1 today"):
        store.record(sub("alice", 99.0, at=T0 + timedelta(hours=5)), daily_limit=3)
    store.record(sub("alice", 20.0, challenge="c2", at=T0), daily_limit=3)          # other challenge: its own count
    store.record(sub("bob", 20.0, at=T0 + timedelta(hours=5)), daily_limit=3)       # other student: own count
    store.record(sub("alice", 30.0, at=T0 + timedelta(days=1)), daily_limit=3)      # next UTC day: allowed
    assert store.submissions_today("c1", "alice", now=T0) == 3
    assert store.standings("c1", "private").set_index("student").loc["alice", "score"] == 30.0


def test_recording_twice_stores_one_row(db_url):
    store = Leaderboard(db_url)
    s = sub("alice", 50.0)
    store.record(s)
    store.record(s)                         # a grader retrying after a lost connection
    assert len(store.submissions("c1")) == 1


def _grader_threads(url: str, grader: int) -> list[str]:
    store = Leaderboard(url)
    ids = []
    for k in range(PER_GRADER):
        s = sub(f"student{(grader * PER_GRADER + k) % 40}", float(k), submission_id=f"g{grader}-{k}")
        store.record(s)
        ids.append(s.submission_id)
    store.close()
    return ids


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_concurrent_graders_every_row_once(db_url, workers):
    """8 graders x 25 submissions at once (threads, or forked processes each with its own connection
    pool, like `costlab grade-all`'s workers): all 200 rows are there, none twice."""
    Leaderboard(db_url).close()             # tables exist before the race (as after class-init)
    if workers == "threads":
        with ThreadPoolExecutor(GRADERS) as pool:
            written = [i for ids in pool.map(_grader_threads, [db_url] * GRADERS, range(GRADERS)) for i in ids]
    else:
        with ProcessPoolExecutor(GRADERS, mp_context=get_context("fork")) as pool:
            written = [i for ids in pool.map(_grader_threads, [db_url] * GRADERS, range(GRADERS)) for i in ids]
    rows = Leaderboard(db_url).submissions()
    assert len(written) == GRADERS * PER_GRADER
    assert len(rows) == GRADERS * PER_GRADER
    assert sorted(rows["submission_id"]) == sorted(written)
    assert rows["submission_id"].is_unique
    assert rows["student"].nunique() == 40


def test_daily_limit_holds_under_concurrency(db_url):
    """16 simultaneous submissions by one student with a limit of 5: exactly 5 are recorded."""
    store = Leaderboard(db_url)
    barrier = threading.Barrier(16)

    def submit(k):
        barrier.wait()
        try:
            Leaderboard(db_url).record(sub("alice", float(k)), daily_limit=5)
            return True
        except SubmissionLimitReached:
            return False

    with ThreadPoolExecutor(16) as pool:
        accepted = list(pool.map(submit, range(16)))
    assert sum(accepted) == 5
    assert len(store.submissions("c1", "alice")) == 5


def test_progress_and_badges(db_url):
    store = Leaderboard(db_url)
    store.record(sub("alice", 40.0, challenge="b1", badges=["first-hit"]))
    store.record(sub("alice", 65.0, challenge="b1", badges=["first-hit", "half-price"]))
    store.record(sub("alice", 0.0, challenge="i1"))
    progress = store.progress("alice").set_index("challenge")
    assert progress.loc["b1", "best_score"] == 65.0 and bool(progress.loc["b1", "passed"])
    assert progress.loc["b1", "badges"] == ["first-hit", "half-price"] and progress.loc["b1", "submissions"] == 2
    assert progress.loc["i1", "best_score"] == 0.0 and not bool(progress.loc["i1", "passed"])
    assert store.progress("nobody").empty


def test_urls():
    assert normalize_url("/tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalize_url("postgresql:///costlab") == "postgresql+psycopg:///costlab"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///a.db") == "sqlite:///a.db"


def test_sqlite_uses_wal(tmp_path):
    store = Leaderboard(tmp_path / "lb.db")
    store.record(sub("alice", 1.0))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
