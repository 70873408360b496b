"""Where the gateway keeps what must outlive a process: learners (token hashes), spend and the ledger.

One SQLite file (WAL) for a single gateway, or one PostgreSQL database shared by several
gateway processes behind one address: budgets are rows, and a reservation is one
conditional UPDATE per limit inside one transaction, so no two processes can both take
the last cents. Spend is *reserved* at the request's worst case before the upstream call,
*settled* on the billed cost together with the ledger row (one transaction: a row is never
lost or written twice), or *released* when the call fails.

The experiment store (`lab.store`, being built alongside) is meant to hold these rows too;
until it lands, every ledger row goes through `GatewayStore.insert_row`, the one place to
point at it.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from lab.errors import ConfigError

TOKEN_PREFIX = "clab_"
#: the simulation ledger's columns, then the gateway's own; stage flags are 0/1
LEDGER_COLUMNS = ("request_id", "t_arrival_s", "tenant", "feature", "provider", "model", "input_tokens",
                  "cached_input_tokens", "output_tokens", "cost_usd", "baseline_cost_usd", "queue_ms",
                  "service_ms", "latency_ms", "outcome", "cache", "dedup", "rate_limit", "budget", "retry",
                  "output_cap", "learner", "endpoint", "overhead_ms", "status", "cache_write_tokens", "prompt")
_TEXT = {"request_id", "tenant", "feature", "provider", "model", "outcome", "learner", "endpoint", "prompt"}
_INT = {"input_tokens", "cached_input_tokens", "output_tokens", "cache", "dedup", "rate_limit", "budget", "retry",
        "output_cap", "status", "cache_write_tokens"}
EPS_USD = 1e-12

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS learners (name TEXT PRIMARY KEY, token_hash TEXT UNIQUE, daily_usd DOUBLE PRECISION,
       total_usd DOUBLE PRECISION, rpm DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL,
       revoked_at DOUBLE PRECISION, source TEXT NOT NULL)""",
    # DOUBLE PRECISION: PostgreSQL's REAL is 4 bytes, too coarse for sums of cents
    """CREATE TABLE IF NOT EXISTS spend (scope TEXT NOT NULL, period TEXT NOT NULL, spent_usd DOUBLE PRECISION NOT NULL,
       reserved_usd DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, period))""",
    "CREATE TABLE IF NOT EXISTS gateway_ledger (" + ", ".join(
        f"{c} {'TEXT' if c in _TEXT else 'BIGINT' if c in _INT else 'DOUBLE PRECISION'}"
        + (" PRIMARY KEY" if c == "request_id" else "") for c in LEDGER_COLUMNS) + ")",
    "CREATE INDEX IF NOT EXISTS gateway_ledger_learner ON gateway_ledger (learner)",
]


def hash_token(token: str) -> str:
    """What is stored of a token: its SHA-256 (tokens are 256 random bits, so a fast hash suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def today(now_s: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now_s is None else now_s, UTC).strftime("%Y-%m-%d")


def resets_in(period: str, now_s: float | None = None) -> str:
    """When a period's spend resets, in words: "00:00 UTC (in 3 h 12 min)" or "never" for totals."""
    if period == "total":
        return "never (a total cap)"
    now = datetime.fromtimestamp(time.time() if now_s is None else now_s, UTC)
    if len(period) == 7:   # a month, YYYY-MM
        first = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        first = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = int((first - now).total_seconds() // 60)
    return f"{first:%Y-%m-%d} 00:00 UTC (in {minutes // 60} h {minutes % 60} min)"


@dataclass(frozen=True)
class Learner:
    name: str
    daily_usd: float | None
    total_usd: float | None
    rpm: float | None
    revoked: bool
    source: str          # "token" (added by the instructor) or "hub" (a JupyterHub user)


@dataclass(frozen=True)
class Limit:
    """One cap a request is held to: the spend row (scope, period) and its cap (None: counted, not capped)."""

    scope: str
    period: str
    cap_usd: float | None
    label: str           # what a refusal names: "learner alice's daily cap"


class Refused(Exception):
    """A reservation that would take a limit past its cap."""

    def __init__(self, limit: Limit, worst_usd: float, left_usd: float):
        self.limit, self.worst_usd, self.left_usd = limit, worst_usd, left_usd
        super().__init__(f"{limit.label} of ${limit.cap_usd:.4f} would be exceeded: this request could cost up to "
                         f"${worst_usd:.6f} and ${max(left_usd, 0.0):.6f} is left; it resets "
                         f"{resets_in(limit.period)}. Lower max_tokens or ask your instructor.")


class GatewayStore:
    """Learners, spend and ledger rows in SQLite or PostgreSQL (`url`: a path or postgresql://...)."""

    def __init__(self, url: str):
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._lock = threading.Lock()
        if self.postgres:
            import psycopg  # reason: optional driver, only for a shared PostgreSQL store
            self._conn = psycopg.connect(url, autocommit=False)
        else:
            self._conn = sqlite3.connect(url, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._tx() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing -------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    class _Tx:
        def __init__(self, store: GatewayStore):
            self.store = store

        def __enter__(self):
            s = self.store
            s._lock.acquire()
            self.cur = s._conn.cursor()
            if not s.postgres:
                self.cur.execute("BEGIN IMMEDIATE")
            return self

        def execute(self, sql: str, params=()):
            self.cur.execute(self.store._sql(sql), params)
            return self.cur

        def __exit__(self, kind, exc, tb):
            s = self.store
            try:
                if kind is None:
                    s._conn.commit() if s.postgres else self.cur.execute("COMMIT")
                else:
                    s._conn.rollback() if s.postgres else self.cur.execute("ROLLBACK")
            finally:
                self.cur.close()
                s._lock.release()

    def _tx(self) -> GatewayStore._Tx:
        return GatewayStore._Tx(self)

    def _query(self, sql: str, params=()) -> list[tuple]:
        with self._tx() as tx:
            return tx.execute(sql, params).fetchall()

    # -- learners ---------------------------------------------------------------------------

    def add_learner(self, name: str, daily_usd=None, total_usd=None, rpm=None, source: str = "token") -> str:
        """Add a learner and return their token (shown once: only its hash is kept)."""
        if not name or len(name) > 100 or not name.isprintable():
            raise ConfigError(f"learner name: expected 1-100 printable characters, got {name!r}")
        token = new_token()
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM learners WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"learner {name!r} exists; revoke them first or pick another name")
            tx.execute("INSERT INTO learners VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                       (name, hash_token(token) if source == "token" else None, daily_usd, total_usd, rpm,
                        time.time(), source))
        return token

    def ensure_hub_learner(self, name: str, daily_usd=None, total_usd=None, rpm=None) -> Learner | None:
        """The learner a JupyterHub user is (added with the default limits the first time); None if revoked."""
        with self._tx() as tx:
            if not tx.execute("SELECT 1 FROM learners WHERE name = ?", (name,)).fetchone():
                tx.execute("INSERT INTO learners VALUES (?, NULL, ?, ?, ?, ?, NULL, 'hub')",
                           (name, daily_usd, total_usd, rpm, time.time()))
        learner = self.learner(name)
        return None if learner is None or learner.revoked else learner

    def revoke(self, name: str) -> None:
        with self._tx() as tx:
            if tx.execute("UPDATE learners SET revoked_at = ?, token_hash = NULL WHERE name = ? AND revoked_at IS NULL",
                          (time.time(), name)).rowcount != 1:
                raise ConfigError(f"no active learner {name!r}")

    def learner(self, name: str) -> Learner | None:
        rows = self._query("SELECT name, daily_usd, total_usd, rpm, revoked_at, source FROM learners WHERE name = ?",
                           (name,))
        return _learner(rows[0]) if rows else None

    def learner_by_token(self, token: str) -> Learner | None:
        """The active learner holding `token`, or None (unknown or revoked)."""
        rows = self._query("SELECT name, daily_usd, total_usd, rpm, revoked_at, source FROM learners "
                           "WHERE token_hash = ? AND revoked_at IS NULL", (hash_token(token),))
        return _learner(rows[0]) if rows else None

    def learners(self) -> list[Learner]:
        rows = self._query("SELECT name, daily_usd, total_usd, rpm, revoked_at, source FROM learners ORDER BY name")
        return [_learner(r) for r in rows]

    # -- spend --------------------------------------------------------------------------------

    def reserve(self, limits: list[Limit], worst_usd: float) -> None:
        """Hold `worst_usd` on every limit at once, or on none (Refused names the first that is full)."""
        with self._tx() as tx:
            for limit in limits:
                self._ensure_row(tx, limit)
                if limit.cap_usd is None:
                    tx.execute("UPDATE spend SET reserved_usd = reserved_usd + ? WHERE scope = ? AND period = ?",
                               (worst_usd, limit.scope, limit.period))
                    continue
                cur = tx.execute("UPDATE spend SET reserved_usd = reserved_usd + ? WHERE scope = ? AND period = ? "
                                 "AND spent_usd + reserved_usd + ? <= ?",
                                 (worst_usd, limit.scope, limit.period, worst_usd, limit.cap_usd + EPS_USD))
                if cur.rowcount != 1:
                    spent, reserved = tx.execute("SELECT spent_usd, reserved_usd FROM spend WHERE scope = ? "
                                                 "AND period = ?", (limit.scope, limit.period)).fetchone()
                    raise Refused(limit, worst_usd, limit.cap_usd - spent - reserved)

    def settle(self, limits: list[Limit], worst_usd: float, cost_usd: float, row: dict | None) -> None:
        """Replace the hold by the billed cost and write the call's ledger row, in one transaction."""
        with self._tx() as tx:
            for limit in limits:
                tx.execute("UPDATE spend SET reserved_usd = reserved_usd - ?, spent_usd = spent_usd + ? "
                           "WHERE scope = ? AND period = ?", (worst_usd, cost_usd, limit.scope, limit.period))
            if row is not None:
                self.insert_row(tx, row)

    def release(self, limits: list[Limit], worst_usd: float, row: dict | None = None) -> None:
        """Give back a hold whose call failed (nothing was billed)."""
        self.settle(limits, worst_usd, 0.0, row)

    def record(self, row: dict) -> None:
        """A ledger row for a call that held no spend (a cache hit, a refusal)."""
        with self._tx() as tx:
            self.insert_row(tx, row)

    @staticmethod
    def _ensure_row(tx, limit: Limit) -> None:
        tx.execute("INSERT INTO spend VALUES (?, ?, 0, 0) ON CONFLICT (scope, period) DO NOTHING",
                   (limit.scope, limit.period))

    def spent(self, scope: str, period: str) -> tuple[float, float]:
        rows = self._query("SELECT spent_usd, reserved_usd FROM spend WHERE scope = ? AND period = ?", (scope, period))
        return (float(rows[0][0]), float(rows[0][1])) if rows else (0.0, 0.0)

    # -- the ledger ------------------------------------------------------------------------------

    def insert_row(self, tx, row: dict) -> None:
        """The one place a ledger row is written (to point at `lab.store` once it exists)."""
        tx.execute(f"INSERT INTO gateway_ledger ({', '.join(LEDGER_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(LEDGER_COLUMNS))})", tuple(row.get(c) for c in LEDGER_COLUMNS))

    def ledger(self, learner: str | None = None) -> pd.DataFrame:
        """The ledger as a DataFrame (the simulation ledger's columns first), optionally one learner's rows."""
        sql = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM gateway_ledger"
        rows = self._query(sql + (" WHERE learner = ?" if learner else "") + " ORDER BY t_arrival_s",
                           (learner,) if learner else ())
        return pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))

    def usage(self, learner: str | None = None) -> pd.DataFrame:
        """Spend per learner: today, in total, calls, cache hits, and what is left of each cap."""
        day = today()
        rows = []
        for person in self.learners():
            if learner and person.name != learner:
                continue
            spent_today = self.spent(f"learner:{person.name}", day)[0]
            spent_total = self.spent(f"learner:{person.name}", "total")[0]
            counts = self._query("SELECT COUNT(*), SUM(CASE WHEN outcome = 'cache_hit' THEN 1 ELSE 0 END), "
                                 "SUM(cost_usd), SUM(baseline_cost_usd) FROM gateway_ledger WHERE learner = ?",
                                 (person.name,))[0]
            rows.append({"learner": person.name, "status": "revoked" if person.revoked else "active", "source": person.source,
                         "calls": int(counts[0] or 0), "cache_hits": int(counts[1] or 0),
                         "spent_today_usd": spent_today, "daily_usd": person.daily_usd,
                         "spent_total_usd": spent_total, "total_usd": person.total_usd,
                         "saved_usd": float((counts[3] or 0) - (counts[2] or 0))})
        return pd.DataFrame(rows, columns=["learner", "status", "source", "calls", "cache_hits", "spent_today_usd",
                                           "daily_usd", "spent_total_usd", "total_usd", "saved_usd"])


def _learner(r) -> Learner:
    return Learner(name=r[0], daily_usd=r[1], total_usd=r[2], rpm=r[3], revoked=r[4] is not None, source=r[5])
