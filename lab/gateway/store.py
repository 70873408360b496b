"""Where the gateway keeps what must outlive a process: learners (token hashes), spend and the ledger.

One SQLite file (WAL) for a single gateway, or one PostgreSQL database shared by several
gateway processes behind one address, opened through `lab.db` like every costlab database.
Budgets are rows, and a reservation is one UPDATE of every limit's row and one read-back
inside one transaction (a row over its cap rolls it back), so no two processes can both take
the last cents. Spend is *reserved* at the
request's worst case before the upstream call, *settled* on the billed cost together with the
ledger row (one transaction: a row is never lost or written twice), or *released* when the call
fails. Settled rows are then claimed in chunks (`claim_chunk`) for the experiment store's
recorded run (`lab.gateway.recorder`): `gateway_ledger.chunk` and `gateway_flush` are the
watermark that lets a crashed flush be finished after a restart without doubling a row.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from lab.db import RawTransactions, insert_ignore, open_engine, reader, retrying
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
#: how long a token's learner is remembered (a revocation from another process takes this long)
TOKEN_CACHE_S = 2.0
TOKEN_CACHE_SIZE = 10_000
#: the advisory lock PostgreSQL serialises schema set-up and chunk claims on ("clab_gw" in ASCII)
PG_LOCK_KEY = 0x636C61625F6777

# sa.Double: PostgreSQL's REAL is 4 bytes, too coarse for sums of cents
metadata = sa.MetaData()
learners = sa.Table(
    "learners", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("token_hash", sa.Text, unique=True),        # SHA-256 of the token; NULL for hub learners
    sa.Column("daily_usd", sa.Double), sa.Column("total_usd", sa.Double), sa.Column("rpm", sa.Double),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double),
    sa.Column("source", sa.Text, nullable=False),
)
spend = sa.Table(
    "spend", metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("period", sa.Text, primary_key=True),
    sa.Column("spent_usd", sa.Double, nullable=False),
    sa.Column("reserved_usd", sa.Double, nullable=False),
)
gateway_ledger = sa.Table(
    "gateway_ledger", metadata,
    *[sa.Column(c, sa.Text if c in _TEXT else sa.BigInteger if c in _INT else sa.Double,
                primary_key=c == "request_id") for c in LEDGER_COLUMNS],
    sa.Column("chunk", sa.BigInteger),                     # NULL: not yet claimed for the experiment store
)
sa.Index("gateway_ledger_learner", gateway_ledger.c.learner)
CHUNK_INDEX = sa.Index("gateway_ledger_chunk", gateway_ledger.c.chunk)
gateway_flush = sa.Table(
    "gateway_flush", metadata,
    sa.Column("chunk", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.Integer, nullable=False),      # the recorded run in the experiment store
    sa.Column("seq", sa.Integer, nullable=False),         # its chunk number in that run
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("flushed_at", sa.Double),                   # NULL: claimed, not yet known to be stored
)
_LEARNER_COLUMNS = (learners.c.name, learners.c.daily_usd, learners.c.total_usd, learners.c.rpm,
                    learners.c.revoked_at, learners.c.source)


def hash_token(token: str) -> str:
    """What is stored of a token: its SHA-256 (tokens are 256 random bits, so a fast hash suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


_DAY: tuple = (None, "")     # the last UTC day asked for and its name (every call asks for today's)


def today(now_s: float | None = None) -> str:
    """The UTC day of `now_s` (default: now) as YYYY-MM-DD, the period of the daily caps."""
    global _DAY
    t = time.time() if now_s is None else now_s
    day, name = _DAY
    if t // 86400.0 != day:
        day, name = t // 86400.0, datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
        _DAY = (day, name)
    return name


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


@dataclass(frozen=True)
class Chunk:
    """Ledger rows claimed for the experiment store: gateway chunk `chunk` is chunk `seq` of run `run_id`."""

    chunk: int
    run_id: int
    seq: int
    rows: int


class GatewayStore:
    """Learners, spend and ledger rows in SQLite or PostgreSQL (`url`: a path or postgresql://...)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = open_engine(url, "gateway store")
        self.postgres = self.engine.dialect.name == "postgresql"
        self.hot = RawTransactions(self.engine)
        self._rows_made: set[tuple[str, str]] = set()     # spend rows known to exist
        # token hash (or "hub:NAME") -> (read at, learner)
        self._tokens: dict[str, tuple[float, Learner | None]] = {}
        with self.engine.begin() as conn:
            self._lock(conn)
            metadata.create_all(conn)
            if "chunk" not in {c["name"] for c in sa.inspect(conn).get_columns("gateway_ledger")}:
                conn.execute(sa.text("ALTER TABLE gateway_ledger ADD COLUMN chunk BIGINT"))   # a store from before
                CHUNK_INDEX.create(conn)

    def close(self) -> None:
        self.hot.close()
        self.engine.dispose()

    def _lock(self, conn: sa.Connection) -> None:
        """Serialise this transaction with the other gateway processes (SQLite's BEGIN IMMEDIATE already does)."""
        if self.postgres:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})

    def _query(self, stmt) -> list[sa.Row]:
        with reader(self.engine) as conn:
            return list(conn.execute(stmt))

    # -- learners ---------------------------------------------------------------------------

    def add_learner(self, name: str, daily_usd=None, total_usd=None, rpm=None, source: str = "token") -> str:
        """Add a learner and return their token (shown once: only its hash is kept)."""
        if not name or len(name) > 100 or not name.isprintable():
            raise ConfigError(f"learner name: expected 1-100 printable characters, got {name!r}")
        token = new_token()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(1).where(learners.c.name == name)).first():
                raise ConfigError(f"learner {name!r} exists; revoke them first or pick another name")
            conn.execute(learners.insert().values(
                name=name, token_hash=hash_token(token) if source == "token" else None, daily_usd=daily_usd,
                total_usd=total_usd, rpm=rpm, created_at=time.time(), revoked_at=None, source=source))
        return token

    def ensure_hub_learner(self, name: str, daily_usd=None, total_usd=None, rpm=None) -> Learner | None:
        """The learner a JupyterHub user is (added with the default limits the first time); None if revoked.

        Remembered for `TOKEN_CACHE_S`, as a token's learner is (a revocation here clears it at once).
        """
        cached, now = self._tokens.get(f"hub:{name}"), time.monotonic()
        if cached is not None and now - cached[0] < TOKEN_CACHE_S:
            return cached[1]
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(self.engine.dialect.name, learners, {
                "name": name, "token_hash": None, "daily_usd": daily_usd, "total_usd": total_usd, "rpm": rpm,
                "created_at": time.time(), "revoked_at": None, "source": "hub"}, ["name"]))
        learner = self.learner(name)
        learner = None if learner is None or learner.revoked else learner
        self._tokens[f"hub:{name}"] = (now, learner)
        return learner

    def revoke(self, name: str) -> None:
        self._tokens.clear()
        with self.engine.begin() as conn:
            done = conn.execute(learners.update().where((learners.c.name == name) & learners.c.revoked_at.is_(None))
                                .values(revoked_at=time.time(), token_hash=None))
            if done.rowcount != 1:
                raise ConfigError(f"no active learner {name!r}")

    def learner(self, name: str) -> Learner | None:
        rows = self._query(sa.select(*_LEARNER_COLUMNS).where(learners.c.name == name))
        return _learner(rows[0]) if rows else None

    def learner_by_token(self, token: str) -> Learner | None:
        """The active learner holding `token`, or None (unknown or revoked).

        Read again after `TOKEN_CACHE_S`: a revocation or a new cap made by another process (the
        `costlab gateway learner` command) takes effect within that time; one made here, at once.
        """
        digest, now = hash_token(token), time.monotonic()
        cached = self._tokens.get(digest)
        if cached is not None and now - cached[0] < TOKEN_CACHE_S:
            return cached[1]
        rows = self._query(sa.select(*_LEARNER_COLUMNS).where((learners.c.token_hash == digest)
                                                              & learners.c.revoked_at.is_(None)))
        learner = _learner(rows[0]) if rows else None
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[digest] = (now, learner)
        return learner

    def learners(self) -> list[Learner]:
        return [_learner(r) for r in self._query(sa.select(*_LEARNER_COLUMNS).order_by(learners.c.name))]

    # -- spend --------------------------------------------------------------------------------

    def reserve(self, limits: list[Limit], worst_usd: float) -> None:
        """Hold `worst_usd` on every limit at once, or on none (Refused names the first that is full).

        One `UPDATE ... RETURNING` holds on every row and reads the rows back in the same
        transaction: a row over its cap rolls the whole hold back. The UPDATE takes the rows' write
        locks (SQLite: the database's, at BEGIN IMMEDIATE), so no other process can hold between them.
        Plain SQL on a held DBAPI connection (`lab.db.RawTransactions`): this runs on every call.
        """
        work = self._holding(limits, worst_usd)
        with self.hot.begin() as cur:
            work(cur)

    async def areserve(self, limits: list[Limit], worst_usd: float) -> None:
        """`reserve` from the event loop: waiting for SQLite's lock, the loop serves other calls; cancelled, nothing is held."""
        await self.hot.run(self._holding(limits, worst_usd))

    def _holding(self, limits: list[Limit], worst_usd: float):
        keys = self._ensure_rows(limits)
        sql, params = self.hot.sql(_RESERVE[len(keys)]), (worst_usd, *_flat(keys))

        def work(cur) -> None:
            cur.execute(sql, params)
            held = {(r[0], r[1]): r[2] + r[3] for r in cur.fetchall()}
            for limit in limits:
                if limit.cap_usd is not None:
                    total = held[(limit.scope, limit.period)]
                    if total > limit.cap_usd + EPS_USD:
                        raise Refused(limit, worst_usd, limit.cap_usd - (total - worst_usd))   # rolls back
        return work

    def _ensure_rows(self, limits: list[Limit]) -> list[tuple[str, str]]:
        """The limits' spend rows as keys, each made the first time this process meets it (rows are never deleted)."""
        keys = list(dict.fromkeys((x.scope, x.period) for x in limits))
        missing = [k for k in keys if k not in self._rows_made]
        if missing:
            with self.engine.begin() as conn:
                for scope, period in missing:
                    conn.execute(insert_ignore(self.engine.dialect.name, spend, {
                        "scope": scope, "period": period, "spent_usd": 0.0, "reserved_usd": 0.0},
                        ["scope", "period"]))
            self._rows_made.update(missing)
        return keys

    def settle(self, limits: list[Limit], worst_usd: float, cost_usd: float, row: dict | None) -> None:
        """Replace the hold by the billed cost and write the call's ledger row, in one transaction."""
        work = self._settling(limits, worst_usd, cost_usd, row)

        def attempt() -> bool:
            with self.hot.begin() as cur:
                work(cur)
            return True

        if row is None:
            attempt()        # no row tells whether a lost commit happened: never retried
        else:
            retrying(attempt, lambda: self._has_row(row["request_id"]), "gateway store: could not settle a call")

    async def asettle(self, limits: list[Limit], worst_usd: float, cost_usd: float, row: dict | None) -> None:
        """`settle` from the event loop (cancelled while it waits for SQLite's lock, it still settles).
        A failed transaction with a row goes to `settle`'s retries, unless the row shows it committed
        after all; one without a row is never retried (as in `settle`: nothing tells a lost commit)."""
        try:
            await self.hot.run(self._settling(limits, worst_usd, cost_usd, row), finish_on_cancel=True)
        except sa.exc.DBAPIError:
            if row is None:
                raise
            if not self._has_row(row["request_id"]):
                self.settle(limits, worst_usd, cost_usd, row)

    def _settling(self, limits: list[Limit], worst_usd: float, cost_usd: float, row: dict | None):
        keys = list(dict.fromkeys((x.scope, x.period) for x in limits))
        hot = self.hot

        def work(cur) -> None:
            if keys:
                cur.execute(hot.sql(_SETTLE[len(keys)]), (worst_usd, cost_usd, *_flat(keys)))
            if row is not None:
                cur.execute(hot.sql(_INSERT_ROW), tuple(row.get(c) for c in LEDGER_COLUMNS))
        return work

    def release(self, limits: list[Limit], worst_usd: float, row: dict | None = None) -> None:
        """Give back a hold whose call failed (nothing was billed)."""
        self.settle(limits, worst_usd, 0.0, row)

    async def arelease(self, limits: list[Limit], worst_usd: float, row: dict | None = None) -> None:
        await self.asettle(limits, worst_usd, 0.0, row)

    def record(self, row: dict) -> None:
        """A ledger row for a call that held no spend (a cache hit, a refusal)."""
        self.settle([], 0.0, 0.0, row)

    async def arecord(self, row: dict) -> None:
        await self.asettle([], 0.0, 0.0, row)

    def spent(self, scope: str, period: str) -> tuple[float, float]:
        rows = self._query(sa.select(spend.c.spent_usd, spend.c.reserved_usd)
                           .where((spend.c.scope == scope) & (spend.c.period == period)))
        return (float(rows[0][0]), float(rows[0][1])) if rows else (0.0, 0.0)

    # -- the ledger ------------------------------------------------------------------------------

    def _has_row(self, request_id: str) -> bool | None:
        return True if self._query(sa.select(1).where(gateway_ledger.c.request_id == request_id)) else None

    def ledger(self, learner: str | None = None) -> pd.DataFrame:
        """The ledger as a DataFrame (the simulation ledger's columns first), optionally one learner's rows."""
        q = sa.select(*[gateway_ledger.c[c] for c in LEDGER_COLUMNS]).order_by(gateway_ledger.c.t_arrival_s)
        if learner:
            q = q.where(gateway_ledger.c.learner == learner)
        return pd.DataFrame([tuple(r) for r in self._query(q)], columns=list(LEDGER_COLUMNS))

    def usage(self, learner: str | None = None) -> pd.DataFrame:
        """Spend per learner: today, in total, calls, cache hits, and what is left of each cap."""
        day = today()
        g = gateway_ledger.c
        rows = []
        for person in self.learners():
            if learner and person.name != learner:
                continue
            spent_today = self.spent(f"learner:{person.name}", day)[0]
            spent_total = self.spent(f"learner:{person.name}", "total")[0]
            counts = self._query(sa.select(sa.func.count(), sa.func.sum(sa.case((g.outcome == "cache_hit", 1), else_=0)),
                                           sa.func.sum(g.cost_usd), sa.func.sum(g.baseline_cost_usd))
                                 .where(g.learner == person.name))[0]
            rows.append({"learner": person.name, "status": "revoked" if person.revoked else "active", "source": person.source,
                         "calls": int(counts[0] or 0), "cache_hits": int(counts[1] or 0),
                         "spent_today_usd": spent_today, "daily_usd": person.daily_usd,
                         "spent_total_usd": spent_total, "total_usd": person.total_usd,
                         "saved_usd": float((counts[3] or 0) - (counts[2] or 0))})
        return pd.DataFrame(rows, columns=["learner", "status", "source", "calls", "cache_hits", "spent_today_usd",
                                           "daily_usd", "spent_total_usd", "total_usd", "saved_usd"])

    # -- flushing to the experiment store -----------------------------------------------------------

    def claim_chunk(self, run_id: int, max_rows: int, first_seq: int = 0) -> Chunk | None:
        """Mark up to `max_rows` unclaimed rows (oldest first) as the next chunk of run `run_id`, or None if none.

        One transaction under the gateways' lock: the chunk's number, its rows and its `gateway_flush`
        row (pending until `flushed`) are taken together, so no row is ever in two chunks. Its chunk
        number in the run is at least `first_seq` (the chunks the run already held when it was opened).
        """
        def attempt() -> Chunk | None:
            with self.engine.begin() as conn:
                self._lock(conn)
                f = gateway_flush.c
                chunk = conn.execute(sa.select(sa.func.coalesce(sa.func.max(f.chunk) + 1, 0))).scalar_one()
                seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(f.seq) + 1, 0))
                                   .where(f.run_id == run_id)).scalar_one()
                g = gateway_ledger.c
                oldest = sa.select(g.request_id).where(g.chunk.is_(None)).order_by(g.t_arrival_s, g.request_id)
                rows = conn.execute(gateway_ledger.update().where(g.chunk.is_(None) & g.request_id.in_(
                    oldest.limit(max_rows))).values(chunk=chunk)).rowcount
                if not rows:
                    return None
                claimed = Chunk(int(chunk), int(run_id), max(int(seq), first_seq), int(rows))
                conn.execute(gateway_flush.insert().values(chunk=claimed.chunk, run_id=claimed.run_id,
                                                           seq=claimed.seq, rows=claimed.rows, flushed_at=None))
                return claimed

        return retrying(attempt, lambda: None, "gateway store: could not claim ledger rows")

    def unclaimed(self, at_most: int) -> int:
        """How many ledger rows no chunk has claimed yet, counted up to `at_most` (the recorder's cue to flush;
        every gateway process on the database writes them)."""
        g = gateway_ledger.c
        inner = sa.select(g.request_id).where(g.chunk.is_(None)).limit(at_most).subquery()
        return int(self._query(sa.select(sa.func.count()).select_from(inner))[0][0])

    def pending_chunks(self) -> list[Chunk]:
        """Chunks claimed but not yet known to be in the experiment store (a flush cut short), oldest first."""
        f = gateway_flush.c
        return [Chunk(int(r.chunk), int(r.run_id), int(r.seq), int(r.rows)) for r in self._query(
            sa.select(f.chunk, f.run_id, f.seq, f.rows).where(f.flushed_at.is_(None)).order_by(f.chunk))]

    def chunk_rows(self, chunk: int) -> pd.DataFrame:
        """A chunk's ledger rows in a fixed order and dtypes (counts 0 where NULL, as the simulator's are)."""
        with reader(self.engine) as conn:          # the DBAPI cursor's rows: SQLAlchemy's Row per row was half the flush
            cur = conn.connection.driver_connection.cursor()
            try:
                cur.execute(self.hot.sql(_CHUNK_ROWS), (chunk,))
                rows = cur.fetchall()
            finally:
                cur.close()
        frame = pd.DataFrame(dict(zip(LEDGER_COLUMNS, map(list, zip(*rows)))) if rows else
                             {c: [] for c in LEDGER_COLUMNS}, columns=list(LEDGER_COLUMNS))
        for c in LEDGER_COLUMNS:
            if c in _INT:
                frame[c] = frame[c].fillna(0).astype("int64")
            elif c not in _TEXT:
                frame[c] = frame[c].astype("float64")
        return frame

    def flushed(self, chunk: int) -> None:
        """Record that a chunk is in the experiment store (the watermark moves past it)."""
        with self.engine.begin() as conn:
            conn.execute(gateway_flush.update().where(gateway_flush.c.chunk == chunk).values(flushed_at=time.time()))


def _where(n: int) -> str:
    """`n` spend rows by key, for the hot path's plain SQL (an OR of primary keys: both databases use the index)."""
    return " OR ".join(["(scope = ? AND period = ?)"] * n)


def _flat(keys: list[tuple[str, str]]) -> tuple:
    return tuple(v for key in keys for v in key)


#: the hot path's statements by the number of spend rows a call counts against (at most 8: see Gateway.limits)
_RESERVE = {n: f"UPDATE spend SET reserved_usd = reserved_usd + ? WHERE {_where(n)} "
               f"RETURNING scope, period, spent_usd, reserved_usd" for n in range(1, 9)}
_SETTLE = {n: f"UPDATE spend SET reserved_usd = reserved_usd - ?, spent_usd = spent_usd + ? WHERE {_where(n)}"
           for n in range(1, 9)}
#: a chunk's rows in a fixed order, for the recorder
_CHUNK_ROWS = (f"SELECT {', '.join(LEDGER_COLUMNS)} FROM gateway_ledger WHERE chunk = ? "
               "ORDER BY t_arrival_s, request_id")
#: the ledger row as the hot path writes it (the table's columns from LEDGER_COLUMNS; `chunk` stays NULL)
_INSERT_ROW = f"INSERT INTO gateway_ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * len(LEDGER_COLUMNS))})"


def _learner(r) -> Learner:
    return Learner(name=r[0], daily_usd=r[1], total_usd=r[2], rpm=r[3], revoked=r[4] is not None, source=r[5])
