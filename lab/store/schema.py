"""The store's tables and their migrations: a version number in the database, one function per step.

Why not Alembic: the store has a handful of tables that costlab alone writes, its migrations
run when a learner opens a store (no operator runs a tool), and each step is a few lines of
SQLAlchemy. `costlab_store_schema` holds one row per applied version; `migrate` applies the
missing steps in one transaction under the database's write lock (SQLite's BEGIN IMMEDIATE,
a PostgreSQL advisory lock), so eight processes opening a new store at once migrate it once.
A store newer than this costlab is refused with one line, never changed.

Tables carry a `costlab_` prefix so the store and the leaderboard can share one PostgreSQL.
Ledgers are Parquet chunks in `costlab_ledger_chunks` on every database: a simulated run is one
chunk written in the run's own transaction (so a half-written run never appears, with no files
to rename), and a recorded (gateway) run grows by appending chunks.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pyarrow.parquet as pq
import sqlalchemy as sa

from lab.errors import ConfigError

SCHEMA_VERSION = 2
#: the advisory lock key PostgreSQL serialises migrations on ("costlab" in ASCII, as a number)
PG_LOCK_KEY = 0x636F73746C6162

metadata = sa.MetaData()

schema_versions = sa.Table(
    "costlab_store_schema", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.String(32), nullable=False),
)
experiments = sa.Table(
    "costlab_experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),            # JSON list, sorted
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.String(32), nullable=False),              # ISO 8601 UTC, sortable
    sa.UniqueConstraint("owner", "name", name="uq_costlab_experiment"),
)
runs = sa.Table(
    "costlab_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_uid", sa.String(64), nullable=False, unique=True),  # a retry never saves twice
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("costlab_experiments.id"), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, default="simulated"),   # simulated | recorded
    sa.Column("scenario_name", sa.String(200), nullable=False, default=""),
    sa.Column("scenario_toml", sa.Text),                                 # NULL: recorded, or built in code
    sa.Column("scenario_sha256", sa.String(64)),
    sa.Column("scenario_path", sa.Text, nullable=False, default=""),    # where relative trace paths start
    sa.Column("seed", sa.Integer),
    sa.Column("requests", sa.Integer, nullable=False, default=0),
    sa.Column("requested", sa.Integer),                                  # the --requests override, if any
    sa.Column("costlab_version", sa.String(32), nullable=False),
    sa.Column("prices_as_of", sa.String(32), nullable=False),
    sa.Column("rules_as_of", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),                       # JSON: Result.summary()
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("wall_s", sa.Float),                                       # simulation wall time, when known
    sa.Column("simulated_s", sa.Float),
    sa.Column("ledger_rows", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False, default="complete"),  # recorded: open | complete
)
sa.Index("ix_costlab_runs_experiment", runs.c.experiment_id)
ledger_chunks = sa.Table(
    "costlab_ledger_chunks", metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("costlab_runs.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("parquet", sa.LargeBinary, nullable=False),
)
baselines = sa.Table(
    "costlab_baselines", metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("costlab_runs.id"), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
)
progress = sa.Table(
    "costlab_progress", metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),                   # lesson | challenge
    sa.Column("item", sa.String(200), primary_key=True),                  # "03", "b1-first-cache"
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("passed", sa.Boolean, nullable=False, default=False),
    sa.Column("first_at", sa.String(32), nullable=False),
    sa.Column("last_at", sa.String(32), nullable=False),
    sa.Column("passed_at", sa.String(32)),
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- migrations


#: version 1 as it was written: experiments, runs (all simulated), one ledger blob per run,
#: baselines, progress (a test builds a v1 store from these statements and migrates it)
V1_DDL = (
    "CREATE TABLE costlab_store_schema (version INTEGER PRIMARY KEY, applied_at VARCHAR(32) NOT NULL)",
    "CREATE TABLE costlab_experiments (id INTEGER PRIMARY KEY, owner VARCHAR(200) NOT NULL, "
    "name VARCHAR(200) NOT NULL, tags TEXT NOT NULL, notes TEXT NOT NULL, created_at VARCHAR(32) NOT NULL, "
    "CONSTRAINT uq_costlab_experiment UNIQUE (owner, name))",
    "CREATE TABLE costlab_runs (id INTEGER PRIMARY KEY, run_uid VARCHAR(64) NOT NULL UNIQUE, "
    "experiment_id INTEGER NOT NULL REFERENCES costlab_experiments (id), owner VARCHAR(200) NOT NULL, "
    "scenario_name VARCHAR(200) NOT NULL, scenario_toml TEXT, scenario_sha256 VARCHAR(64), "
    "scenario_path TEXT NOT NULL, seed INTEGER, requests INTEGER NOT NULL, requested INTEGER, costlab_version VARCHAR(32) NOT NULL, "
    "prices_as_of VARCHAR(32) NOT NULL, rules_as_of VARCHAR(32) NOT NULL, summary TEXT NOT NULL, "
    "tags TEXT NOT NULL, note TEXT NOT NULL, created_at VARCHAR(32) NOT NULL, wall_s FLOAT, simulated_s FLOAT)",
    "CREATE INDEX ix_costlab_runs_experiment ON costlab_runs (experiment_id)",
    "CREATE TABLE costlab_ledgers (run_id INTEGER PRIMARY KEY REFERENCES costlab_runs (id), "
    "parquet BYTEA NOT NULL)",
    "CREATE TABLE costlab_baselines (owner VARCHAR(200) NOT NULL, name VARCHAR(200) NOT NULL, "
    "run_id INTEGER NOT NULL REFERENCES costlab_runs (id), note TEXT NOT NULL, created_at VARCHAR(32) NOT NULL, "
    "PRIMARY KEY (owner, name))",
    "CREATE TABLE costlab_progress (owner VARCHAR(200) NOT NULL, kind VARCHAR(16) NOT NULL, "
    "item VARCHAR(200) NOT NULL, attempts INTEGER NOT NULL, passed BOOLEAN NOT NULL, first_at VARCHAR(32) NOT NULL, "
    "last_at VARCHAR(32) NOT NULL, passed_at VARCHAR(32), PRIMARY KEY (owner, kind, item))",
)


def _v2(conn: sa.Connection) -> None:
    """Recorded runs (a gateway's live ledger, no simulation) and appendable ledgers in chunks."""
    conn.exec_driver_sql("ALTER TABLE costlab_runs ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'simulated'")
    conn.exec_driver_sql("ALTER TABLE costlab_runs ADD COLUMN ledger_rows INTEGER NOT NULL DEFAULT 0")
    conn.exec_driver_sql("ALTER TABLE costlab_runs ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'complete'")
    ledger_chunks.create(conn)
    old = sa.table("costlab_ledgers", sa.column("run_id"), sa.column("parquet"))
    for run_id, blob in conn.execute(sa.select(old.c.run_id, old.c.parquet)):
        rows = _parquet_rows(blob)
        conn.execute(ledger_chunks.insert().values(run_id=run_id, seq=0, rows=rows, parquet=blob))
        conn.execute(runs.update().where(runs.c.id == run_id).values(ledger_rows=rows))
    conn.exec_driver_sql("DROP TABLE costlab_ledgers")


def _parquet_rows(blob: bytes) -> int:
    return pq.ParquetFile(io.BytesIO(blob)).metadata.num_rows


#: version -> the step that makes it from the one before (version 1 is V1_DDL itself)
MIGRATIONS = {2: _v2}


def current_version(conn: sa.Connection, where: str) -> int:
    """The store's schema version (0: an empty database); a foreign `costlab_runs` is refused."""
    names = sa.inspect(conn).get_table_names()
    if "costlab_store_schema" not in names:
        if "costlab_runs" in names:
            raise ConfigError(f"store {where}: has a costlab_runs table but no schema version; not a costlab store")
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar() or 0)


def migrate(engine: sa.Engine, where: str) -> int:
    """Bring the store at `where` to SCHEMA_VERSION; refuse (one line) a store from a newer costlab."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
        version = current_version(conn, where)
        if version > SCHEMA_VERSION:
            raise ConfigError(f"store {where}: schema version {version} is newer than this costlab's "
                              f"({SCHEMA_VERSION}); upgrade costlab to open it")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            if step == 1:
                for ddl in V1_DDL:
                    conn.exec_driver_sql(v1_sql(ddl, engine.dialect.name))
            else:
                MIGRATIONS[step](conn)
            conn.execute(schema_versions.insert().values(version=step, applied_at=now_iso()))
        return SCHEMA_VERSION


def v1_sql(ddl: str, dialect: str) -> str:
    """A V1_DDL statement in `dialect`'s spelling (binary type, autoincrementing keys)."""
    if dialect == "sqlite":
        return ddl.replace("BYTEA", "BLOB")
    return ddl.replace("id INTEGER PRIMARY KEY,", "id SERIAL PRIMARY KEY,")
