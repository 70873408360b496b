"""The experiment store: experiments, their runs (summary, scenario, ledger), baselines and progress.

One `Store` per database URL (`lab.db` opens it: SQLite in WAL mode, or a class's PostgreSQL).
Every save is one transaction: the experiment row (created once, however many processes
race for it), the run row and its ledger in Parquet, so a run is either wholly there or not
at all; each save carries a unique `run_uid`, so a retry after a lost connection never saves
twice. A run is `simulated` (its scenario TOML, seed and request count re-run it bit for bit)
or `recorded` (a gateway's live ledger, no scenario: `start_recorded` then `append_ledger`).
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import tomllib
import uuid
import warnings
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc

from lab.analysis.baselines import Comparison, compare, run_metrics
from lab.db import insert_ignore, normalize_url, open_engine, reader, retrying, shown_url
from lab.errors import ConfigError
from lab.grading.private import known_private_seeds
from lab.loader import scenario_from_dict
from lab.pricing import PRICE_DATE
from lab.result import Result
from lab.sim import simulate
from lab.store.schema import baselines, experiments, ledger_chunks, migrate, now_iso, progress, runs
from lab.twin.scenario_file import scenario_toml

#: the date the prompt-caching and provider rules were written against (lab/data/models.toml)
RULES_AS_OF = PRICE_DATE.date().isoformat()
KINDS = ("simulated", "recorded")
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")


def owner_name() -> str:
    """Who saves: $COSTLAB_OWNER, else the JupyterHub user, else the login name."""
    return os.environ.get("COSTLAB_OWNER") or os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def costlab_version() -> str:
    try:
        return importlib_metadata.version("costlab")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _secrets() -> list[str]:
    """Values a store must never hold: API keys and tokens from the environment."""
    return [v for k, v in os.environ.items() if k.endswith(SECRET_ENV_SUFFIXES) and len(v) >= 8]


def _check_clean(texts: dict[str, str], seed: int | None) -> None:
    for secret in _secrets():
        for what, text in texts.items():
            if secret in text:
                raise ConfigError(f"store: refusing to save: the {what} contains an API key or token "
                                  "from the environment")
    if seed is not None and seed in known_private_seeds():
        raise ConfigError("store: refusing to save a run on a private (grading) seed")


def _ledger_text(rows: pd.DataFrame) -> str:
    """What the secret check reads of ledger rows: each text cell's distinct values (a tenth of the
    time of the whole table as CSV on a 5,000-row gateway chunk). Numbers are added only when a
    secret could be written as one."""
    secrets = _secrets()
    if not secrets:
        return ""
    if any(set(v) <= set("0123456789.-+eE") for v in secrets):
        return rows.to_csv(index=False)
    text = [c for c in rows.columns if not pd.api.types.is_numeric_dtype(rows[c])]
    return "\n".join(str(v) for c in text for v in pd.unique(rows[c]))


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _frame(blobs: list[bytes]) -> pd.DataFrame:
    parts = [pd.read_parquet(io.BytesIO(b)) for b in blobs]
    if not parts:
        return pd.DataFrame()
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts, ignore_index=True)


@dataclass
class RecordedRun:
    """A recorded (gateway or live) run: its ledger and summary; there is nothing to re-simulate."""

    run_id: int
    ledger: pd.DataFrame
    _summary: dict

    def summary(self) -> dict:
        return self._summary

    def _repr_html_(self) -> str:
        return (f"<div><b>recorded run {self.run_id}</b> · {len(self.ledger):,} calls · "
                f"${float(self.ledger['cost_usd'].sum()) if len(self.ledger) else 0.0:,.4f}</div>")


class Store:
    """A store over SQLAlchemy (SQLite or PostgreSQL); safe for concurrent writers."""

    def __init__(self, url, *, busy_timeout_s: float = 60.0):
        self.url = normalize_url(url)
        self.engine = open_engine(self.url, "store", busy_timeout_s=busy_timeout_s)
        self.dialect = self.engine.dialect.name
        try:
            self.engine.connect().close()    # unreachable or refused: say so now, no retries
            retrying(lambda: migrate(self.engine, shown_url(self.url)), lambda: None, f"store {shown_url(self.url)}")
        except exc.DBAPIError as e:       # not a database, unreachable, no permission
            self.engine.dispose()
            first = (str(e.orig).strip().splitlines() or [type(e.orig).__name__])[0]
            raise ConfigError(f"store {shown_url(self.url)}: cannot open: {first}") from None

    def __repr__(self) -> str:
        return f"Store({shown_url(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- saving -------------------------------------------------------------------

    def _experiment_id(self, conn, name: str, owner: str, tags: list[str], notes: str) -> int:
        values = {"owner": owner, "name": name, "tags": json.dumps(sorted(set(tags))), "notes": notes,
                  "created_at": now_iso()}
        stmt = insert_ignore(self.dialect, experiments, values, ["owner", "name"])
        where = (experiments.c.owner == owner) & (experiments.c.name == name)
        if stmt is not None:
            conn.execute(stmt)
        elif conn.execute(sa.select(experiments.c.id).where(where)).first() is None:
            conn.execute(experiments.insert().values(**values))
        row = conn.execute(sa.select(experiments.c.id, experiments.c.tags).where(where).with_for_update()).one()
        merged = sorted(set(json.loads(row.tags)) | set(tags))
        if merged != json.loads(row.tags):
            conn.execute(experiments.update().where(experiments.c.id == row.id).values(tags=json.dumps(merged)))
        return int(row.id)

    def _insert_run(self, row: dict, experiment: str, owner: str, tags: list[str], note: str,
                    ledger: pd.DataFrame | None) -> int:
        """One transaction: experiment (get or create), run, ledger; retried without doubling."""
        uid = uuid.uuid4().hex
        row = {**row, "run_uid": uid, "owner": owner, "tags": json.dumps(sorted(set(tags))), "note": note,
               "created_at": now_iso(), "ledger_rows": 0 if ledger is None else len(ledger)}
        blob = None if ledger is None else _parquet(ledger)

        def attempt() -> int:
            with self.engine.begin() as conn:
                exp_id = self._experiment_id(conn, experiment, owner, tags, "")
                run_id = conn.execute(runs.insert().values(experiment_id=exp_id, **row)
                                      .returning(runs.c.id)).scalar_one()
                if blob is not None:
                    conn.execute(ledger_chunks.insert().values(run_id=run_id, seq=0, rows=len(ledger), parquet=blob))
                return int(run_id)

        return retrying(attempt, lambda: self._run_id_of(uid), f"store: could not save run {uid}")

    def _run_id_of(self, uid: str) -> int | None:
        with reader(self.engine) as conn:
            return conn.execute(sa.select(runs.c.id).where(runs.c.run_uid == uid)).scalar()

    def save(self, result: Result, experiment: str, *, tags=(), note: str = "", wall_s: float | None = None,
             owner: str | None = None) -> int:
        """Save a simulated run under `experiment`; returns its run id."""
        _check_name(experiment, "experiment")
        sc = result.scenario
        text = scenario_toml(sc.source) if sc.source is not None else None
        summary = result.summary()
        summary_json = json.dumps(summary, sort_keys=False)
        _check_clean({"scenario": text or "", "note": note, "tags": " ".join(tags), "summary": summary_json},
                     int(result.seed))
        row = {"kind": "simulated", "scenario_name": sc.name, "scenario_toml": text,
               "scenario_sha256": hashlib.sha256(text.encode()).hexdigest() if text else None,
               "scenario_path": sc.path if sc.source is not None else "", "seed": int(result.seed),
               "requests": int(summary["requests"]), "requested": result.requested, "costlab_version": costlab_version(),
               "prices_as_of": PRICE_DATE.date().isoformat(), "rules_as_of": RULES_AS_OF, "summary": summary_json,
               "wall_s": wall_s, "simulated_s": float(summary["simulated_s"]), "status": "complete"}
        return self._insert_run(row, experiment, owner or owner_name(), list(tags), note, result.ledger)

    def start_recorded(self, experiment: str, *, name: str = "", tags=(), note: str = "",
                       owner: str | None = None) -> int:
        """A new recorded run (no scenario): the gateway appends its calls with `append_ledger`."""
        _check_name(experiment, "experiment")
        _check_clean({"note": note, "tags": " ".join(tags)}, None)
        return self._insert_run(self._recorded_row(name), experiment, owner or owner_name(), list(tags), note, None)

    @staticmethod
    def _recorded_row(name: str) -> dict:
        return {"kind": "recorded", "scenario_name": name, "scenario_toml": None, "scenario_sha256": None,
                "scenario_path": "", "seed": None, "requests": 0, "requested": None,
                "costlab_version": costlab_version(), "prices_as_of": PRICE_DATE.date().isoformat(),
                "rules_as_of": RULES_AS_OF, "summary": "{}", "wall_s": None, "simulated_s": None, "status": "open"}

    def open_recorded(self, experiment: str, *, name: str = "", owner: str | None = None) -> int:
        """The owner's latest recorded run of `experiment`, re-opened for appends, or a new one.

        A gateway calls this when it starts, so a restart carries on the same run. One transaction
        with the experiment's row locked: gateways starting at once open one run, not one each.
        """
        _check_name(experiment, "experiment")
        who = owner or owner_name()
        uid = uuid.uuid4().hex

        def attempt() -> int:
            with self.engine.begin() as conn:
                exp_id = self._experiment_id(conn, experiment, who, [], "")
                run_id = conn.execute(sa.select(sa.func.max(runs.c.id)).where(
                    (runs.c.experiment_id == exp_id) & (runs.c.owner == who) & (runs.c.kind == "recorded"))).scalar()
                if run_id is not None:
                    conn.execute(runs.update().where(runs.c.id == run_id).values(status="open"))
                    return int(run_id)
                return int(conn.execute(runs.insert().values(
                    experiment_id=exp_id, run_uid=uid, owner=who, tags="[]", note="", created_at=now_iso(),
                    ledger_rows=0, **self._recorded_row(name)).returning(runs.c.id)).scalar_one())

        return retrying(attempt, lambda: self._run_id_of(uid), f"store: could not open a run of {experiment!r}")

    def chunks(self, run_id: int) -> int:
        """How many ledger chunks run `run_id` holds (the next chunk's number)."""
        with reader(self.engine) as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(ledger_chunks.c.seq) + 1, 0))
                                    .where(ledger_chunks.c.run_id == int(run_id))).scalar_one())

    def append_ledger(self, run_id: int, rows: pd.DataFrame, *, seq: int | None = None) -> int:
        """Append ledger rows to an open recorded run in one transaction; returns its row count after.

        The run's row is locked (PostgreSQL) or the database is (SQLite) while the next chunk
        number is taken, so concurrent appenders never collide or interleave a chunk. A caller that
        numbers its chunks gives `seq`: a chunk already stored under that number with the same
        `request_id`s is not written again (a flush retried after a crash never doubles a row);
        one with other rows is a one-line error.
        """
        if not len(rows):
            return self._ledger_rows(run_id)
        _check_clean({"ledger": _ledger_text(rows)}, None)
        frame = rows.reset_index(drop=True)
        blob = _parquet(frame)

        def attempt() -> int:
            with self.engine.begin() as conn:
                run = conn.execute(sa.select(runs.c.kind, runs.c.status, runs.c.ledger_rows, runs.c.summary)
                                   .where(runs.c.id == run_id).with_for_update()).first()
                stored = None if seq is None or run is None else conn.execute(
                    sa.select(ledger_chunks.c.parquet).where((ledger_chunks.c.run_id == run_id)
                                                             & (ledger_chunks.c.seq == seq))).scalar()
                if stored is not None:
                    if not _frame([stored])["request_id"].equals(frame["request_id"]):
                        raise ConfigError(f"store: chunk {seq} of run {run_id} holds other rows")
                    return int(run.ledger_rows)
                if run is None or run.kind != "recorded" or run.status != "open":
                    raise ConfigError(f"store: run {run_id} is not an open recorded run")
                at = seq if seq is not None else conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(ledger_chunks.c.seq) + 1, 0))
                    .where(ledger_chunks.c.run_id == run_id)).scalar_one()
                conn.execute(ledger_chunks.insert().values(run_id=run_id, seq=at, rows=len(rows), parquet=blob))
                total = int(run.ledger_rows) + len(rows)
                summary = _recorded_summary(frame, total, json.loads(run.summary or "{}"))
                conn.execute(runs.update().where(runs.c.id == run_id).values(
                    ledger_rows=total, requests=total, summary=json.dumps(summary)))
                return total

        return retrying(attempt, lambda: None, f"store: could not append to run {run_id}")

    def finish_recorded(self, run_id: int, summary: dict | None = None) -> None:
        """Close a recorded run (no more appends), storing its summary (by default calls, cost, baseline cost)."""
        if summary is None:
            led = self.ledger(run_id)
            summary = _recorded_summary(led, len(led))
        with self.engine.begin() as conn:
            conn.execute(runs.update().where((runs.c.id == run_id) & (runs.c.kind == "recorded"))
                         .values(status="complete", summary=json.dumps(summary)))

    def _ledger_rows(self, run_id: int) -> int:
        with reader(self.engine) as conn:
            return int(conn.execute(sa.select(runs.c.ledger_rows).where(runs.c.id == run_id)).scalar() or 0)

    # -- reading ------------------------------------------------------------------

    def runs(self, experiment: str | None = None, owner: str | None = None) -> pd.DataFrame:
        """One row per run (oldest first): id, experiment, owner, kind, scenario, seed, cost, reduction, tags."""
        q = (sa.select(runs.c.id.label("run_id"), experiments.c.name.label("experiment"), runs.c.owner, runs.c.kind,
                       runs.c.scenario_name.label("scenario"), runs.c.seed, runs.c.requests, runs.c.summary,
                       runs.c.tags, runs.c.note, runs.c.created_at, runs.c.costlab_version, runs.c.status)
             .join(experiments, runs.c.experiment_id == experiments.c.id).order_by(runs.c.id))
        if experiment:
            q = q.where(experiments.c.name == experiment)
        if owner:
            q = q.where(runs.c.owner == owner)
        with reader(self.engine) as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        cols = ["run_id", "experiment", "owner", "kind", "scenario", "seed", "requests", "cost_usd",
                "baseline_cost_usd", "reduction_pct", "tags", "note", "created_at", "costlab_version", "status"]
        for r in rows:
            s = json.loads(r.pop("summary"))
            r["cost_usd"], r["baseline_cost_usd"] = s.get("cost_usd"), s.get("baseline_cost_usd")
            r["reduction_pct"] = s.get("reduction_pct")
            r["tags"] = json.loads(r["tags"])
        return pd.DataFrame(rows, columns=cols)

    def row(self, run_id: int) -> dict:
        """A run's stored row (summary parsed), or a one-line error naming the id."""
        with reader(self.engine) as conn:
            r = conn.execute(sa.select(runs, experiments.c.name.label("experiment"))
                             .join(experiments, runs.c.experiment_id == experiments.c.id)
                             .where(runs.c.id == int(run_id))).mappings().first()
        if r is None:
            raise ConfigError(f"store: no run {run_id} in {shown_url(self.url)}")
        out = dict(r)
        out["summary"], out["tags"] = json.loads(out["summary"]), json.loads(out["tags"])
        return out

    def ledger(self, run_id: int) -> pd.DataFrame:
        """The stored ledger of a run, exactly as saved (all its chunks in order)."""
        with reader(self.engine) as conn:
            blobs = conn.execute(sa.select(ledger_chunks.c.parquet).where(ledger_chunks.c.run_id == int(run_id))
                                 .order_by(ledger_chunks.c.seq)).scalars().all()
        return _frame(list(blobs))

    def load(self, run_id: int) -> Result | RecordedRun:
        """A saved run back as a `Result` that renders, plots and reports like the fresh one.

        A simulated run is re-simulated from its stored scenario, seed and request count (the
        simulator is deterministic) and checked against the stored summary and ledger; should
        they differ (another costlab version, other prices), the stored ones are what the
        Result shows, with a warning. A recorded run comes back as a `RecordedRun`.
        """
        row = self.row(run_id)
        stored = self.ledger(run_id)
        if row["kind"] == "recorded":
            return RecordedRun(int(run_id), stored, row["summary"])
        if row["scenario_toml"] is None:
            raise ConfigError(f"store: run {run_id} was built in code and saved without a scenario file; "
                              "its ledger is `lab.store.ledger(run_id)`")
        scenario = scenario_from_dict(tomllib.loads(row["scenario_toml"]), path=row["scenario_path"] or "<store>")
        result = simulate(scenario, seed=row["seed"], requests=row["requested"], progress=False)
        same = (json.dumps(result.summary()) == json.dumps(row["summary"])
                and result.ledger.equals(stored) and list(result.ledger.dtypes) == list(stored.dtypes))
        if not same:
            warnings.warn(f"run {run_id}: re-running it (costlab {costlab_version()}) does not reproduce what "
                          f"costlab {row['costlab_version']} saved; showing the saved summary and ledger",
                          stacklevel=2)
            result._summary, result._ledger = row["summary"], stored
        return result

    def compare(self, a, b) -> Comparison:
        """`b` against `a` (the baseline) with the comparison of lab.analysis.baselines.

        Each side is a run id, a list of run ids, or an experiment's name (all its runs); runs
        on the same seeds are paired seed by seed, so two experiments saved on seeds 0..4
        give a paired t interval for every metric.
        """
        ids_a, ids_b = self._ids(a), self._ids(b)
        return compare([self._sample(i) for i in ids_a], [self._sample(i) for i in ids_b],
                       baseline_name=self._side_name(a, ids_a), candidate_name=self._side_name(b, ids_b))

    def _ids(self, side) -> list[int]:
        if isinstance(side, str) and not side.isdigit():
            ids = [int(i) for i in self.runs(experiment=side)["run_id"]]
            if not ids:
                raise ConfigError(f"store: no runs in experiment {side!r}")
            return ids
        return [int(i) for i in side] if isinstance(side, (list, tuple)) else [int(side)]

    @staticmethod
    def _side_name(side, ids: list[int]) -> str:
        return side if isinstance(side, str) and not side.isdigit() else "run " + ", ".join(map(str, ids))

    def _sample(self, run_id: int) -> dict:
        row = self.row(run_id)
        sla = tomllib.loads(row["scenario_toml"]).get("sla", {}).get("p95_ms") if row["scenario_toml"] else None
        m = run_metrics(self.ledger(run_id), sla)
        if row["seed"] is not None:
            m["seed"] = int(row["seed"])
        return m

    # -- baselines and progress ---------------------------------------------------

    def set_baseline(self, name: str, run_id: int, note: str = "", owner: str | None = None) -> None:
        """Name run `run_id` as baseline `name` (replacing an earlier one of that name)."""
        _check_name(name, "baseline")
        self.row(run_id)
        who = owner or owner_name()
        with self.engine.begin() as conn:
            conn.execute(baselines.delete().where((baselines.c.owner == who) & (baselines.c.name == name)))
            conn.execute(baselines.insert().values(owner=who, name=name, run_id=int(run_id), note=note,
                                                   created_at=now_iso()))

    def baseline(self, name: str, owner: str | None = None) -> int:
        """The run id of baseline `name`."""
        with reader(self.engine) as conn:
            run_id = conn.execute(sa.select(baselines.c.run_id).where(
                (baselines.c.owner == (owner or owner_name())) & (baselines.c.name == name))).scalar()
        if run_id is None:
            raise ConfigError(f"store: no baseline named {name!r}")
        return int(run_id)

    def record_progress(self, kind: str, item: str, passed: bool, owner: str | None = None) -> None:
        """Count one attempt at a lesson's self-check or a challenge; `passed` sticks once true."""
        if kind not in ("lesson", "challenge"):
            raise ValueError(f"kind must be 'lesson' or 'challenge', got {kind!r}")
        who, now = owner or owner_name(), now_iso()
        key = (progress.c.owner == who) & (progress.c.kind == kind) & (progress.c.item == item)

        def attempt() -> None:
            with self.engine.begin() as conn:
                stmt = insert_ignore(self.dialect, progress, {"owner": who, "kind": kind, "item": item, "attempts": 0,
                                                              "passed": False, "first_at": now, "last_at": now},
                                     ["owner", "kind", "item"])
                conn.execute(stmt)
                values = {"attempts": progress.c.attempts + 1, "last_at": now}
                if passed:
                    values.update(passed=True, passed_at=sa.func.coalesce(progress.c.passed_at, now))
                conn.execute(progress.update().where(key).values(**values))

        retrying(attempt, lambda: None, "store: could not record progress")

    def progress(self, owner: str | None = None) -> pd.DataFrame:
        """Progress rows (everyone's when `owner` is None): owner, kind, item, attempts, passed, dates."""
        q = sa.select(progress).order_by(progress.c.owner, progress.c.kind, progress.c.item)
        if owner:
            q = q.where(progress.c.owner == owner)
        with reader(self.engine) as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        return pd.DataFrame(rows, columns=[c.name for c in progress.columns])

    def class_progress(self) -> pd.DataFrame:
        """One row per learner, one column per lesson or challenge: "passed", "tried" or ""."""
        p = self.progress()
        if p.empty:
            return pd.DataFrame()
        p["cell"] = p["passed"].map({True: "passed", False: "tried"})
        p["column"] = p["kind"].map({"lesson": "lesson ", "challenge": ""}) + p["item"]
        return p.pivot(index="owner", columns="column", values="cell").fillna("").rename_axis(None, axis=1)


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ConfigError(f"{what} name {name!r}: give 1 to 200 characters")


def _recorded_summary(rows: pd.DataFrame, total: int, before: dict | None = None) -> dict:
    """A recorded run's summary: calls, cost, baseline cost and reduction; `before` (the summary of the
    rows stored earlier) plus `rows`, so an open run's summary is current after every append."""
    before = before or {}
    cost = before.get("cost_usd", 0.0) + (float(rows["cost_usd"].sum()) if len(rows) else 0.0)
    summary = {"requests": total, "cost_usd": cost}
    if "baseline_cost_usd" in rows:
        base = before.get("baseline_cost_usd", 0.0) + float(rows["baseline_cost_usd"].sum())
        summary.update(baseline_cost_usd=base, reduction_pct=100.0 * (1.0 - cost / base) if base > 0 else 0.0)
    return summary
