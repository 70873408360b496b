"""One way to open a database: SQLite by default, any SQLAlchemy URL (a class's PostgreSQL) for many.

The leaderboard and the experiment store share these practices: a bare path means SQLite
(its folder made), `postgresql://` is read with psycopg 3, SQLite runs in WAL mode with a busy
timeout and writers take the write lock at `BEGIN IMMEDIATE` (so concurrent writers queue
instead of failing), readers use `reader(engine)` (a plain `BEGIN`, which WAL lets run beside
a writer), and `retrying` re-runs a transaction that lost a lock or a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc

from lab.errors import ConfigError

T = TypeVar("T")
SQLITE_BUSY = 5          # sqlite3.SQLITE_BUSY (the low byte of an extended code such as SQLITE_BUSY_RECOVERY)


def normalize_url(url: str | Path) -> str:
    """A SQLAlchemy URL; a bare path means SQLite, and postgresql:// uses psycopg 3."""
    text = str(url)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    scheme, rest = text.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return text


def shown_url(url: str) -> str:
    """The URL with its password hidden (for messages and reprs)."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def open_engine(url: str | Path, what: str, *, busy_timeout_s: float = 60.0) -> sa.Engine:
    """An engine for `url`; `what` ("leaderboard", "store") names it in a one-line error."""
    text = normalize_url(url)
    try:
        sa_url = sa.engine.make_url(text)
    except exc.ArgumentError as e:
        raise ConfigError(f"{what}: not a database URL: {url!r} ({e})") from None
    dialect = sa_url.get_backend_name()
    kwargs: dict = {}
    if dialect == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(text, **kwargs)
    except (ImportError, exc.NoSuchModuleError) as e:
        raise ConfigError(f"{what}: cannot open {shown_url(text)}: {e}") from None
    if dialect == "sqlite":
        _sqlite_setup(engine, busy_timeout_s)
    return engine


def _sqlite_setup(engine: sa.Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None            # let us issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        # writers take the write lock now, not at their first write; readers (WAL) need none
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("costlab_read") else "BEGIN IMMEDIATE")


def reader(engine: sa.Engine) -> sa.Connection:
    """A connection for reading only (on SQLite a plain BEGIN: it never waits for a writer)."""
    return engine.connect().execution_options(costlab_read=True)


class Busy(Exception):
    """SQLite's write lock is another connection's just now (raised by `RawTransactions.begin(wait=False)`)."""


class RawTransactions:
    """Short write transactions at the DBAPI level on a connection each thread holds, for a hot path.

    The gateway's hold and settlement run on every call, where SQLAlchemy's cost per statement and
    a pool checkout per transaction were most of the time. Same practices as `open_engine`'s
    writers: SQLite takes the write lock at `BEGIN IMMEDIATE`. SQL takes `?` placeholders on every
    dialect (psycopg's are `%s`). A driver error is raised as SQLAlchemy's (e.g.
    `exc.OperationalError`, so `retrying` treats it as it treats the engine's), and the thread's
    connection is then dropped, so the next transaction starts on a fresh one.

    A busy SQLite write lock is waited for here, not in SQLite's busy handler: that one sleeps 1, 2,
    5, 10, 15, 20... ms between tries, so a lock held 12 ms by another writer cost a caller 33 ms.
    Here the tries are 0.2-2 ms apart (`begin`), or the event loop serves other calls meanwhile (`run`).
    """

    def __init__(self, engine: sa.Engine, busy_timeout_s: float = 60.0):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.error = engine.dialect.loaded_dbapi.Error
        self.busy_timeout_s = busy_timeout_s
        self._held = threading.local()
        self._sql: dict[str, str] = {}
        #: False: the held connections' commits leave SQLite's WAL checkpoints to `checkpoint()`, which
        #: another thread or process calls (a checkpoint writes and syncs the database file: tens of ms in a commit)
        self.autocheckpoint = True

    def sql(self, text: str) -> str:
        """`text` with this dialect's placeholders (remembered: the same few statements run on every call)."""
        out = self._sql.get(text)
        if out is None:
            out = self._sql[text] = text if self.sqlite else text.replace("?", "%s")
        return out

    @contextmanager
    def begin(self, *, wait: bool = True) -> Iterator:
        """A DBAPI cursor inside one write transaction: committed at the block's end, rolled back on an error.

        SQLite's write lock busy: waited for up to the busy timeout, or with `wait=False` `Busy` is
        raised at once (nothing was done, and the connection stays).
        """
        fairy = getattr(self._held, "fairy", None)
        if fairy is None:
            fairy = self._hold()
        conn = fairy.driver_connection
        try:
            cur = conn.cursor()
            try:
                if self.sqlite:
                    self._lock(cur, wait)
                yield cur
                cur.execute("COMMIT") if self.sqlite else conn.commit()
            except Busy:
                raise
            except BaseException:
                try:
                    cur.execute("ROLLBACK") if self.sqlite else conn.rollback()
                except self.error:
                    pass
                raise
            finally:
                cur.close()
        except self.error as e:
            self._held.fairy = None
            fairy.invalidate()
            raise exc.DBAPIError.instance(None, None, e, self.error) from e

    def _lock(self, cur, wait: bool) -> None:
        """BEGIN IMMEDIATE on SQLite; while another connection writes, tried again 0.2-2 ms apart until the busy timeout."""
        deadline, delay_s = None, 0.0002
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except self.error as e:
                if (getattr(e, "sqlite_errorcode", 0) & 0xFF) != SQLITE_BUSY:
                    raise
                if not wait:
                    raise Busy() from None
                now = time.monotonic()
                deadline = deadline or now + self.busy_timeout_s
                if now >= deadline:
                    raise
            time.sleep(delay_s)
            delay_s = min(2 * delay_s, 0.002)

    async def run(self, work: Callable[[object], T], *, finish_on_cancel: bool = False) -> T:
        """`work(cursor)` in one write transaction, from a coroutine: while SQLite's lock is busy, the
        event loop serves other calls (no thread blocks in a sleep). Cancelled while it waits, the work
        is done anyway, blocking, if `finish_on_cancel` (a settlement must land), else never."""
        deadline, delay_s = None, 0.0005
        while True:
            try:
                with self.begin(wait=False) as cur:
                    return work(cur)
            except Busy:
                pass
            now = time.monotonic()
            deadline = deadline or now + self.busy_timeout_s
            if now >= deadline:          # as long as `begin` would have waited: then its error
                with self.begin() as cur:
                    return work(cur)
            try:
                await asyncio.sleep(delay_s)
            except asyncio.CancelledError:
                if finish_on_cancel:
                    with self.begin() as cur:
                        work(cur)
                raise
            delay_s = min(2 * delay_s, 0.004)

    def _hold(self):
        """This thread's connection, checked out once: on SQLite with no busy handler (`_lock` waits
        instead) and, if asked, without WAL checkpoints."""
        fairy = self._held.fairy = self.engine.raw_connection()
        if self.sqlite:
            conn = fairy.driver_connection
            self._held.pragmas = [(name, conn.execute(f"PRAGMA {name}").fetchone()[0])
                                  for name in ("busy_timeout", "wal_autocheckpoint")]
            conn.execute("PRAGMA busy_timeout = 0")
            if not self.autocheckpoint:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        return fairy

    def checkpoint(self) -> None:
        """Move SQLite's WAL into the database file now, on a pooled connection (PASSIVE: it never waits
        for a writer; a busy database is left for the next call). Nothing to do elsewhere."""
        if not self.sqlite:
            return
        conn = self.engine.raw_connection()
        try:
            conn.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except self.error:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        """Give back the calling thread's connection (others go when the engine is disposed)."""
        fairy = getattr(self._held, "fairy", None)
        if fairy is not None:
            self._held.fairy = None
            if self.sqlite:     # back in the pool, it waits for locks and checkpoints as the engine's others do
                for name, value in self._held.pragmas:
                    with contextlib.suppress(self.error):
                        fairy.driver_connection.execute(f"PRAGMA {name} = {int(value)}")
            fairy.close()


def insert_ignore(dialect: str, table: sa.Table, values: dict, keys: list[str]):
    """INSERT ... ON CONFLICT (keys) DO NOTHING on SQLite and PostgreSQL; None elsewhere."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # this database's own dialect only
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # this database's own dialect only
    else:
        return None
    return insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)


def retrying(attempt: Callable[[], T], done: Callable[[], T | None], what: str, tries: int = 12) -> T:
    """`attempt()` (one transaction), retried with jittered backoff on a lock, a lost connection or
    a race on a unique key; before each retry `done()` says whether an earlier try committed after
    all (its result, or None), so a retry never records anything twice.
    """
    last: Exception | None = None
    for k in range(tries):
        try:
            return attempt()
        except (exc.IntegrityError, exc.OperationalError, exc.InterfaceError) as e:
            last = e
            try:
                found = done()
            except exc.DBAPIError:
                found = None
            if found is not None:
                return found
        time.sleep(min(2.0, 0.05 * 2**k) * random.uniform(0.5, 1.0))
    raise ConfigError(f"{what}: {str(last).splitlines()[0] if last else 'failed'}")
