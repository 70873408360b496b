"""The leaderboard: every graded submission, best score per student, pseudonyms, limits, badges.

SQLite by default (opened by `lab.db`: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` so
concurrent graders queue instead of failing); any SQLAlchemy URL for a shared server, e.g. a class's
PostgreSQL (`postgresql://user@host/db` is read with psycopg 3). Writes are idempotent:
each submission has a unique id, so a grader that retries after a lost connection never
records a row twice. The per-day limit is checked and the row inserted in one transaction
(the student's row is locked on PostgreSQL; SQLite has one writer at a time).

Views: `standings(challenge, "public")` ranks pseudonyms by their best public-seed score
(what learners see while a challenge is open); `"private"` ranks by the private-seed score
that counts, with names, for the instructor. `progress(student)` is one learner's record.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc

from lab.db import insert_ignore, normalize_url, open_engine, reader, retrying, shown_url
from lab.errors import CostlabError
from lab.fmt import html_markup, html_text, plain_text

_ADJECTIVES = ("amber", "brave", "calm", "clever", "crisp", "eager", "fuzzy", "gentle", "golden", "happy", "jolly",
               "keen", "lively", "lucky", "mellow", "nimble", "proud", "quick", "quiet", "rapid", "shiny", "silent",
               "sunny", "swift", "tidy", "vivid", "witty", "zesty", "bold", "cosmic", "dapper", "frosty")
_ANIMALS = ("otter", "falcon", "lynx", "panda", "heron", "badger", "koala", "gecko", "marmot", "orca", "ibis",
            "lemur", "puffin", "quokka", "raven", "tapir", "walrus", "yak", "zebra", "bison", "coyote", "dingo",
            "ferret", "gibbon", "hare", "jaguar", "kiwi", "llama", "moose", "newt", "osprey", "beaver")
MAX_REASON_CHARS = 400      # reasons are stored escaped (lab.fmt.plain_text) and cut to this

metadata = sa.MetaData()
students = sa.Table(
    "costlab_students", metadata,
    sa.Column("student", sa.String(200), primary_key=True),
    sa.Column("pseudonym", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
)
submissions = sa.Table(
    "costlab_submissions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("submission_id", sa.String(64), nullable=False, unique=True),
    sa.Column("challenge", sa.String(100), nullable=False),
    sa.Column("student", sa.String(200), sa.ForeignKey("costlab_students.student"), nullable=False),
    sa.Column("submitted_at", sa.String(32), nullable=False),      # ISO 8601 UTC, sortable
    sa.Column("day", sa.String(10), nullable=False),               # UTC date, for the daily limit
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("public_score", sa.Float),
    sa.Column("constraints_met", sa.Boolean, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),                 # JSON
    sa.Column("badges", sa.Text, nullable=False),                  # JSON list of badge ids
    sa.Column("notebook_sha256", sa.String(64), nullable=False, default=""),
    sa.Column("grading_s", sa.Float, nullable=False, default=0.0),
)
sa.Index("ix_costlab_sub_student_day", submissions.c.challenge, submissions.c.student, submissions.c.day)


class SubmissionLimitReached(CostlabError):
    """The student has used today's submissions for this challenge."""


@dataclass
class Submission:
    """One graded submission as the leaderboard stores it."""

    challenge: str
    student: str
    score: float
    constraints_met: bool
    passed: bool
    reason: str
    metrics: dict = field(default_factory=dict)
    badges: list[str] = field(default_factory=list)
    public_score: float | None = None
    notebook_sha256: str = ""
    grading_s: float = 0.0
    submission_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    submitted_at: datetime | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leaderboard:
    """A leaderboard store over SQLAlchemy (SQLite or PostgreSQL); safe for concurrent graders."""

    def __init__(self, url: str | Path, *, busy_timeout_s: float = 60.0):
        self.url = normalize_url(url)
        self.engine = open_engine(self.url, "leaderboard", busy_timeout_s=busy_timeout_s)
        self.dialect = self.engine.dialect.name
        self._create_tables()

    def __repr__(self) -> str:
        return f"Leaderboard({shown_url(self.url)!r})"

    # -- setup --------------------------------------------------------------------

    def _create_tables(self) -> None:
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                return
            except (exc.IntegrityError, exc.ProgrammingError, exc.OperationalError):
                # another grader created them at the same moment
                time.sleep(0.1 * (attempt + 1))
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ------------------------------------------------------------------

    def _ensure_student(self, conn, student: str, now: datetime) -> None:
        values = {"student": student, "pseudonym": _random_pseudonym(), "created_at": _iso(now)}
        stmt = insert_ignore(self.dialect, students, values, ["student"])
        if stmt is not None:
            conn.execute(stmt)
        elif conn.execute(sa.select(students.c.student).where(students.c.student == student)).first() is None:
            conn.execute(students.insert().values(**values))
        if self.dialect == "postgresql":   # serialize this student's submissions (the daily limit)
            conn.execute(sa.select(students.c.student).where(students.c.student == student).with_for_update())

    def record(self, sub: Submission, daily_limit: int = 0) -> Submission:
        """Store a graded submission once (retrying safely), enforcing `daily_limit` (0 = none)."""
        sub.submitted_at = sub.submitted_at or _now()
        row = {"submission_id": sub.submission_id, "challenge": sub.challenge, "student": sub.student,
               "submitted_at": _iso(sub.submitted_at), "day": sub.submitted_at.astimezone(UTC).date().isoformat(),
               "score": float(sub.score), "public_score": None if sub.public_score is None else float(sub.public_score),
               "constraints_met": bool(sub.constraints_met), "passed": bool(sub.passed), "reason": plain_text(sub.reason, MAX_REASON_CHARS),
               "metrics": json.dumps(sub.metrics, sort_keys=True), "badges": json.dumps(sorted(sub.badges)),
               "notebook_sha256": sub.notebook_sha256, "grading_s": float(sub.grading_s)}

        def attempt() -> Submission:
            with self.engine.begin() as conn:
                if self._exists(conn, sub.submission_id):
                    return sub
                self._ensure_student(conn, sub.student, sub.submitted_at)
                if daily_limit:
                    used = self._count_day(conn, sub.challenge, sub.student, row["day"])
                    if used >= daily_limit:
                        raise SubmissionLimitReached(
                            f"{sub.student} has used all {daily_limit} submissions for {sub.challenge} "
                            f"today ({row['day']} UTC); try again tomorrow")
                conn.execute(submissions.insert().values(**row))
            return sub

        # a pseudonym collision, a lock or a dropped connection is retried; our own earlier commit is found
        return retrying(attempt, lambda: sub if self._exists_now(sub.submission_id) else None,
                        f"leaderboard: could not record submission {sub.submission_id}")

    def _exists(self, conn, submission_id: str) -> bool:
        q = sa.select(submissions.c.id).where(submissions.c.submission_id == submission_id)
        return conn.execute(q).first() is not None

    def _reader(self):
        return reader(self.engine)

    def _exists_now(self, submission_id: str) -> bool:
        try:
            with self._reader() as conn:
                return self._exists(conn, submission_id)
        except exc.DBAPIError:
            return False

    def _count_day(self, conn, challenge: str, student: str, day: str) -> int:
        q = sa.select(sa.func.count()).select_from(submissions).where(
            submissions.c.challenge == challenge, submissions.c.student == student, submissions.c.day == day)
        return int(conn.execute(q).scalar_one())

    # -- reading ------------------------------------------------------------------

    def submissions_today(self, challenge: str, student: str, now: datetime | None = None) -> int:
        with self._reader() as conn:
            return self._count_day(conn, challenge, student, (now or _now()).astimezone(UTC).date().isoformat())

    def pseudonym(self, student: str) -> str | None:
        with self._reader() as conn:
            return conn.execute(sa.select(students.c.pseudonym).where(students.c.student == student)).scalar()

    def submissions(self, challenge: str | None = None, student: str | None = None) -> pd.DataFrame:
        """Every stored submission (newest last), optionally for one challenge and/or student."""
        q = sa.select(submissions, students.c.pseudonym).join(students).order_by(submissions.c.id)
        if challenge:
            q = q.where(submissions.c.challenge == challenge)
        if student:
            q = q.where(submissions.c.student == student)
        with self._reader() as conn:
            frame = pd.DataFrame(conn.execute(q).mappings().all())
        if frame.empty:
            return pd.DataFrame(columns=[c.name for c in submissions.columns] + ["pseudonym"])
        frame["badges"] = frame["badges"].map(json.loads)
        frame["metrics"] = frame["metrics"].map(json.loads)
        return frame

    def standings(self, challenge: str, view: str = "public") -> pd.DataFrame:
        """Best score per student, ranked (ties: the earlier best submission first).

        "public": pseudonyms and public-seed scores (learners may see this); "private": names,
        pseudonyms and the private-seed score that counts (instructor only).
        """
        if view not in ("public", "private"):
            raise ValueError(f"view must be 'public' or 'private', got {view!r}")
        subs = self.submissions(challenge)
        if subs.empty:
            cols = ["rank", "pseudonym", "public_score", "submissions", "badges"]
            return pd.DataFrame(columns=cols if view == "public" else
                                ["rank", "student", "pseudonym", "score", "public_score", "passed",
                                 "submissions", "badges", "best_at"])
        key = "public_score" if view == "public" else "score"
        subs[key] = subs[key].fillna(0.0)
        rows = []
        for student, g in subs.groupby("student", sort=False):
            best = g.sort_values([key, "submitted_at"], ascending=[False, True]).iloc[0]
            rows.append({"student": student, "pseudonym": best["pseudonym"], "score": float(g["score"].max()),
                         "public_score": float(g["public_score"].fillna(0.0).max()),
                         "passed": bool(g["passed"].any()), "submissions": len(g),
                         "badges": sorted(set().union(*g["badges"])), "best_at": best["submitted_at"],
                         "_key": float(best[key])})
        table = pd.DataFrame(rows).sort_values(["_key", "best_at"], ascending=[False, True]).reset_index(drop=True)
        table.insert(0, "rank", range(1, len(table) + 1))
        if view == "public":
            return table[["rank", "pseudonym", "public_score", "submissions", "badges"]]
        return table[["rank", "student", "pseudonym", "score", "public_score", "passed", "submissions", "badges",
                      "best_at"]]

    def progress(self, student: str) -> pd.DataFrame:
        """One student's record: per challenge, submissions, best scores, passed, badges."""
        subs = self.submissions(student=student)
        cols = ["challenge", "submissions", "best_score", "best_public_score", "passed", "badges", "last_at"]
        if subs.empty:
            return pd.DataFrame(columns=cols)
        rows = [{"challenge": ch, "submissions": len(g), "best_score": float(g["score"].max()),
                 "best_public_score": float(g["public_score"].fillna(0.0).max()), "passed": bool(g["passed"].any()),
                 "badges": sorted(set().union(*g["badges"])), "last_at": g["submitted_at"].max()}
                for ch, g in subs.groupby("challenge")]
        return pd.DataFrame(rows, columns=cols)

    def view(self, challenge: str, private: bool = False) -> LeaderboardView:
        """A notebook-friendly view (renders as an HTML table)."""
        return LeaderboardView(challenge, "private" if private else "public",
                               self.standings(challenge, "private" if private else "public"))


@dataclass
class LeaderboardView:
    """A ranked table for a notebook (`_repr_html_`) or a static page for learners (`to_html`)."""

    challenge: str
    kind: str
    frame: pd.DataFrame

    def to_html(self) -> str:
        frame = self.frame.copy()
        if "badges" in frame:
            frame["badges"] = frame["badges"].map(lambda b: ", ".join(b))
        title = f"{html_text(self.challenge)} · {self.kind} leaderboard"
        return f"<h4>{title}</h4>" + html_markup(frame.to_html(index=False, float_format=lambda x: f"{x:.2f}", escape=True))

    def _repr_html_(self) -> str:
        return self.to_html()


def _random_pseudonym() -> str:
    rng = secrets.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_ANIMALS)}-{rng.randrange(100):02d}"
