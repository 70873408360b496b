"""The experiment store on SQLite and, when COSTLAB_TEST_POSTGRES_URL is set, on a real PostgreSQL.

Expected numbers come from the runs themselves: a reloaded run must equal the fresh run bit for
bit (summary JSON text, ledger values and dtypes, the report built from it), and N writers
saving K runs each must leave exactly N*K runs, one experiment and N*K progress attempts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import lab
import lab.lessons
import lab.store
from lab.analysis.baselines import compare
from lab.db import normalize_url
from lab.errors import ConfigError, CostlabError
from lab.grading.private import known_private_seeds
from lab.report import build_report
from lab.store import Store
from lab.store.schema import SCHEMA_VERSION, V1_DDL, current_version, metadata, v1_sql
from lab.store.store import _parquet

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "support-chatbot.toml"
PG_ENV = "COSTLAB_TEST_POSTGRES_URL"
WRITERS, PER_WRITER = 8, 5
REQUESTS = 600


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "lab.db")
    pg = os.environ.get(PG_ENV)
    if not pg:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql:///costlab_test) to test on PostgreSQL")
    engine = sa.create_engine(normalize_url(pg))
    with engine.begin() as conn:       # a clean store for each test
        for name in [*reversed([t.name for t in metadata.sorted_tables]), "costlab_ledgers"]:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name} CASCADE")
    engine.dispose()
    return pg


@pytest.fixture(scope="module")
def fresh():
    return lab.simulate(lab.load_scenario(SCENARIO), seed=3, requests=REQUESTS)


def test_round_trip_is_bit_for_bit_and_reports_alike(url, fresh):
    store = Store(url)
    run_id = store.save(fresh, "cache-sizing", tags=["lru", "first"], note="1000 entries")
    again = store.load(run_id)
    assert json.dumps(again.summary()) == json.dumps(fresh.summary())       # the JSON text, float for float
    stored = store.ledger(run_id)
    pd.testing.assert_frame_equal(stored, fresh.ledger, check_exact=True)    # values and dtypes
    pd.testing.assert_frame_equal(again.ledger, fresh.ledger, check_exact=True)
    assert again._repr_html_() == fresh._repr_html_()
    fresh_report = build_report(fresh, seeds=1, frontier=False, progress=False)
    loaded_report = build_report(again, seeds=1, frontier=False, progress=False)
    assert json.dumps(loaded_report.numbers, default=str) == json.dumps(fresh_report.numbers, default=str)
    def page(report):       # the page minus the minute it was generated
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", report.html())
    assert page(loaded_report) == page(fresh_report)                       # text, tables and chart PNGs
    row = store.row(run_id)
    assert row["kind"] == "simulated" and row["seed"] == 3 and row["requests"] == REQUESTS
    assert row["requested"] == REQUESTS and row["tags"] == ["first", "lru"] and row["note"] == "1000 entries"
    assert row["scenario_toml"] and len(row["scenario_sha256"]) == 64 and row["prices_as_of"] == "2026-11-01"
    listed = store.runs()
    assert list(listed["run_id"]) == [run_id] and listed.loc[0, "cost_usd"] == fresh.summary()["cost_usd"]


def test_a_run_that_differs_from_its_rerun_shows_what_was_saved(tmp_path, fresh):
    store = Store(tmp_path / "lab.db")
    run_id = store.save(fresh, "e")
    with store.engine.begin() as conn:      # as if an older costlab had saved other numbers
        conn.execute(sa.text("UPDATE costlab_runs SET summary = :s"), {"s": json.dumps({**fresh.summary(),
                                                                                         "cost_usd": 1.5})})
    with pytest.warns(UserWarning, match="does not reproduce"):
        again = store.load(run_id)
    assert again.summary()["cost_usd"] == 1.5


def test_compare_experiments_pairs_by_seed_like_the_baselines_module(tmp_path):
    store = Store(tmp_path / "lab.db")
    sc = lab.load_scenario(SCENARIO)
    small = lab.lessons.variant("support-chatbot", {"pipeline[cache].capacity": 50})
    big_runs = [lab.simulate(sc, seed=s, requests=REQUESTS) for s in range(3)]
    small_runs = [lab.simulate(small, seed=s, requests=REQUESTS) for s in range(3)]
    for r in big_runs:
        store.save(r, "big-cache")
    for r in small_runs:
        store.save(r, "small-cache")
    got = store.compare("small-cache", "big-cache")
    want = compare(small_runs, big_runs)
    assert got.paired and want.paired
    pd.testing.assert_frame_equal(got.table(), want.table(), check_exact=True)
    one = store.compare(1, 4)                       # two run ids: one sample each, no interval
    assert one.table().loc["cost_usd", "n"] == 1
    with pytest.raises(ConfigError, match="no runs in experiment 'nope'"):
        store.compare("nope", "big-cache")


# --------------------------------------------------------------------------- concurrency


def _writer(url: str, k: int, result, out) -> None:
    """One of the racing processes (forked: `result` is inherited, not pickled)."""
    store = Store(url)
    ids = [store.save(result, "race", tags=[f"w{k}"], note=f"writer {k} run {j}") for j in range(PER_WRITER)]
    for _ in range(PER_WRITER):
        store.record_progress("lesson", "02", passed=k % 2 == 0, owner="ada")
    out.put(ids)


def test_eight_writers_lose_nothing_and_double_nothing(url, fresh):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, k, fresh, out)) for k in range(WRITERS)]
    for p in procs:
        p.start()
    reader, polls = Store(url), 0
    while True:                       # meanwhile, a reader never sees half a run
        with reader.engine.connect() as conn:
            pairs = conn.execute(sa.text("SELECT r.id, r.ledger_rows, coalesce(sum(c.rows), 0) FROM costlab_runs r "
                                         "LEFT JOIN costlab_ledger_chunks c ON c.run_id = r.id GROUP BY r.id, "
                                         "r.ledger_rows")).all()
        assert all(rows == chunk_rows == REQUESTS for _, rows, chunk_rows in pairs)
        polls += 1
        if len(pairs) == WRITERS * PER_WRITER or not any(p.is_alive() for p in procs):
            break
    ids = [i for _ in procs for i in out.get(timeout=240)]
    assert polls >= 1
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = Store(url)
    runs = store.runs()
    assert len(ids) == len(set(ids)) == WRITERS * PER_WRITER == 40
    assert sorted(runs["run_id"]) == sorted(ids)
    assert runs["experiment"].unique().tolist() == ["race"]
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM costlab_experiments")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM costlab_ledger_chunks")).scalar() == 40
        tags = json.loads(conn.execute(sa.text("SELECT tags FROM costlab_experiments")).scalar())
    assert tags == sorted(f"w{k}" for k in range(WRITERS))
    for run_id in ids[:3] + ids[-3:]:
        pd.testing.assert_frame_equal(store.ledger(run_id), fresh.ledger, check_exact=True)
    p = store.progress("ada")
    assert p.loc[0, "attempts"] == WRITERS * PER_WRITER and bool(p.loc[0, "passed"])


def test_a_failed_save_leaves_no_run_behind(tmp_path, fresh, monkeypatch):
    store = Store(tmp_path / "lab.db")
    import lab.store.store as module

    class Broken:
        def insert(self):
            raise RuntimeError("disk full while writing the ledger")

    monkeypatch.setattr(module, "ledger_chunks", Broken())
    with pytest.raises(RuntimeError, match="disk full"):
        store.save(fresh, "half")
    assert store.runs().empty
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM costlab_experiments")).scalar() == 0


# --------------------------------------------------------------------------- recorded runs


def test_a_recorded_run_grows_by_appends_and_closes(url, fresh):
    store = Store(url)
    run_id = store.start_recorded("gateway-week-1", name="support gateway", tags=["live"])
    calls = fresh.ledger.head(30)
    assert store.append_ledger(run_id, calls.iloc[:10]) == 10
    assert store.append_ledger(run_id, calls.iloc[10:30]) == 30
    pd.testing.assert_frame_equal(store.ledger(run_id), calls.reset_index(drop=True), check_exact=True)
    store.finish_recorded(run_id)
    back = store.load(run_id)
    assert isinstance(back, lab.store.RecordedRun) and len(back.ledger) == 30
    assert back.summary()["cost_usd"] == pytest.approx(float(calls["cost_usd"].sum()))
    row = store.row(run_id)
    assert row["kind"] == "recorded" and row["scenario_toml"] is None and row["seed"] is None
    with pytest.raises(ConfigError, match="not an open recorded run"):
        store.append_ledger(run_id, calls.iloc[:1])
    simulated = store.save(fresh, "e")
    with pytest.raises(ConfigError, match="not an open recorded run"):
        store.append_ledger(simulated, calls.iloc[:1])


# --------------------------------------------------------------------------- migrations


def _v1_store(url: str, ledger: pd.DataFrame, summary: dict, toml_text: str) -> None:
    """A store as schema version 1 wrote it: one ledger blob per run in costlab_ledgers, no `kind`."""
    engine = sa.create_engine(normalize_url(url))
    at = "2026-11-20T10:00:00.000000Z"
    with engine.begin() as conn:
        for ddl in V1_DDL:
            conn.exec_driver_sql(v1_sql(ddl, engine.dialect.name))
        conn.execute(sa.text("INSERT INTO costlab_store_schema VALUES (1, :at)"), {"at": at})
        conn.execute(sa.text("INSERT INTO costlab_experiments (owner, name, tags, notes, created_at) "
                             "VALUES ('ada', 'old', '[]', '', :at)"), {"at": at})
        conn.execute(sa.text(
            "INSERT INTO costlab_runs (run_uid, experiment_id, owner, scenario_name, scenario_toml, scenario_sha256, "
            "scenario_path, seed, requests, requested, costlab_version, prices_as_of, rules_as_of, summary, tags, "
            "note, created_at, wall_s, simulated_s) VALUES ('u1', 1, 'ada', 'support-chatbot', :toml, NULL, :path, "
            "3, :n, :n, '0.0.9', '2026-11-01', '2026-11-01', :summary, '[]', '', :at, NULL, 1.0)"),
            {"toml": toml_text, "path": str(SCENARIO), "n": REQUESTS, "summary": json.dumps(summary), "at": at})
        conn.execute(sa.text("INSERT INTO costlab_ledgers VALUES (1, :blob)"), {"blob": _parquet(ledger)})
        conn.execute(sa.text("INSERT INTO costlab_baselines VALUES ('ada', 'before', 1, '', :at)"), {"at": at})
    engine.dispose()


def test_a_version_1_store_is_migrated_and_its_runs_reopen(url, fresh):
    _v1_store(url, fresh.ledger, fresh.summary(), SCENARIO.read_text())
    store = Store(url)
    with store.engine.connect() as conn:
        assert current_version(conn, "x") == SCHEMA_VERSION == 2
        names = sa.inspect(conn).get_table_names()
    assert "costlab_ledgers" not in names and "costlab_ledger_chunks" in names
    row = store.row(1)
    assert row["kind"] == "simulated" and row["ledger_rows"] == REQUESTS and row["status"] == "complete"
    pd.testing.assert_frame_equal(store.ledger(1), fresh.ledger, check_exact=True)
    assert json.dumps(store.load(1).summary()) == json.dumps(fresh.summary())
    assert store.baseline("before", owner="ada") == 1
    assert store.save(fresh, "old", owner="ada") == 2        # the serial key carries on after the migration
    Store(url)                                        # opening again changes nothing
    with store.engine.connect() as conn:
        versions = [r[0] for r in conn.exec_driver_sql("SELECT version FROM costlab_store_schema ORDER BY 1")]
    assert versions == [1, 2]


def test_a_store_from_a_newer_costlab_is_refused_in_one_line(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO costlab_store_schema VALUES (9, 'later')")
    with pytest.raises(ConfigError) as e:
        Store(path)
    assert "schema version 9 is newer than this costlab's (2)" in str(e.value) and "\n" not in str(e.value)


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open") as e:
        Store(path)
    assert "\n" not in str(e.value)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=4096))
def test_any_bytes_as_a_store_file_give_a_costlab_error_or_a_store(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("hostile") / "lab.db"
    path.write_bytes(data)
    try:
        Store(path).close()
    except CostlabError as e:
        assert "\n" not in str(e)


# --------------------------------------------------------------------------- safety


def test_no_api_key_and_no_private_seed_is_ever_stored(tmp_path, fresh, monkeypatch):
    store = Store(tmp_path / "lab.db")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    with pytest.raises(ConfigError, match="API key") as e:
        store.save(fresh, "e", note="my key is sk-test-0123456789abcdef")
    assert "sk-test" not in str(e.value)
    monkeypatch.setenv("COSTLAB_PRIVATE_SEEDS", "b1-first-cache=3,44;i1=5")
    with pytest.raises(ConfigError, match="private"):
        store.save(fresh, "e")                          # fresh ran on seed 3
    assert store.runs().empty
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert "sk-test" not in dump


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200))
def test_private_seed_lists_of_any_text_give_seeds_or_one_costlab_error(text):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COSTLAB_PRIVATE_SEEDS", text)
        mp.delenv("COSTLAB_PRIVATE_DIR", raising=False)
        try:
            seeds = known_private_seeds()
        except ConfigError as e:
            assert "\n" not in str(e)
        else:
            assert all(isinstance(s, int) for s in seeds)


def test_the_store_refuses_the_seeds_of_the_graders_private_folder(tmp_path, fresh, monkeypatch):
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "seeds.toml").write_text("[seeds]\nb1-first-cache = [3, 99]\n")
    monkeypatch.setenv("COSTLAB_PRIVATE_DIR", str(tmp_path / "private"))
    monkeypatch.delenv("COSTLAB_PRIVATE_SEEDS", raising=False)
    assert known_private_seeds() == {3, 99}
    with pytest.raises(ConfigError, match="private"):
        Store(tmp_path / "lab.db").save(fresh, "e")


# --------------------------------------------------------------------------- notebooks and lessons


def test_result_save_and_the_module_functions_use_the_configured_store(tmp_path, fresh, monkeypatch):
    monkeypatch.setenv("COSTLAB_STORE", str(tmp_path / "mine.db"))
    monkeypatch.setattr(lab.store, "_current", [])
    run_id = fresh.save("cache-sizing", tags=["a"], note="n")
    assert (tmp_path / "mine.db").is_file()
    assert list(lab.store.runs()["run_id"]) == [run_id]
    assert json.dumps(lab.store.load(run_id).summary()) == json.dumps(fresh.summary())
    lab.store.set_baseline("before", run_id)
    assert lab.store.baseline("before") == run_id


def test_lesson_self_checks_record_progress_only_when_a_store_is_configured(tmp_path, monkeypatch):
    ex = lab.lessons.exercise("02")
    result = lab.simulate(lab.load_scenario(SCENARIO), seed=0, requests=REQUESTS)
    monkeypatch.setattr(lab.store, "_current", [])
    monkeypatch.delenv("COSTLAB_STORE", raising=False)
    monkeypatch.setattr(lab.store, "DEFAULT_PATH", tmp_path / "absent" / "lab.db")
    assert not ex.check(result, share=0.3).passed           # no store: the check still answers
    assert not (tmp_path / "absent").exists()
    monkeypatch.setenv("COSTLAB_STORE", str(tmp_path / "class.db"))
    monkeypatch.setenv("COSTLAB_OWNER", "ada")
    share = float(result.ledger["outcome"].isin(["cache_hit", "deduplicated"]).mean())
    ex.check(result, share=0.3)
    assert ex.check(result, share=share).passed
    p = Store(tmp_path / "class.db").progress("ada")
    assert p[["kind", "item", "attempts"]].values.tolist() == [["lesson", "02", 2]] and bool(p.loc[0, "passed"])
    monkeypatch.setenv("COSTLAB_STORE", "postgresql://nobody@127.0.0.1:9/nowhere")   # unreachable
    assert ex.check(result, share=share).passed                   # a broken store never fails a lesson


def test_class_progress_table(tmp_path):
    store = Store(tmp_path / "class.db")
    store.record_progress("lesson", "00", True, owner="ada")
    store.record_progress("lesson", "02", False, owner="ada")
    store.record_progress("lesson", "00", False, owner="bo")
    store.record_progress("challenge", "b1-first-cache", False, owner="bo")
    table = store.class_progress()
    assert table.loc["ada", "lesson 00"] == "passed" and table.loc["ada", "lesson 02"] == "tried"
    assert table.loc["bo", "b1-first-cache"] == "tried" and table.loc["ada", "b1-first-cache"] == ""
    assert np.array_equal(table.index, ["ada", "bo"])


def test_a_challenge_preview_records_an_attempt(tmp_path, monkeypatch):
    import lab.policy
    monkeypatch.setattr(lab.store, "_current", [])
    monkeypatch.setenv("COSTLAB_STORE", str(tmp_path / "class.db"))
    monkeypatch.setenv("COSTLAB_OWNER", "bo")
    lab.policy.preview([{"stage": "cache", "capacity": 500}], "b1-first-cache", seeds=[0], requests=300,
                       progress=False)
    p = Store(tmp_path / "class.db").progress("bo")
    assert p[["kind", "item", "attempts", "passed"]].values.tolist() == [["challenge", "b1-first-cache", 1, False]]


def test_a_ledger_chunk_holding_a_key_from_the_environment_is_refused(tmp_path, monkeypatch):
    """append_ledger reads each text cell (and, for a key that could pass as a number, the whole table)."""
    store = lab.store.use(tmp_path / "s.db")
    run_id = store.open_recorded("gateway")
    monkeypatch.setenv("COSTLAB_DEMO_API_KEY", "sk-demo-0123456789abcdef")
    monkeypatch.setenv("COSTLAB_PIN_TOKEN", "31415926535")
    rows = pd.DataFrame({"request_id": ["r1", "r2"], "learner": ["ada", "bo"], "cost_usd": [0.001, 0.002],
                         "input_tokens": [10, 20]})
    assert store.append_ledger(run_id, rows) == 2
    leaked = rows.assign(learner=["ada", "note: sk-demo-0123456789abcdef"])
    with pytest.raises(ConfigError, match="ledger contains an API key"):
        store.append_ledger(run_id, leaked)
    with pytest.raises(ConfigError, match="ledger contains an API key"):
        store.append_ledger(run_id, rows.assign(input_tokens=[10, 31415926535]))
    assert len(store.ledger(run_id)) == 2                      # nothing of either refused chunk was kept
