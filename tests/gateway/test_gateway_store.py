"""One ledger for both worlds: every gateway call is a row of a recorded run in the experiment store.

The gateway's URL is also the experiment store's (one database for a class). These tests check
that the recorded run holds exactly the gateway ledger's rows (count, unique ids, cost), that a
restart carries on the same run, and that a flush cut short at any step (a crash between claim,
append and mark, or a killed process) is finished later without losing or doubling a row.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import openai
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import FAKE_KEY, KEY_ENV, gateway_config

import lab.store
from lab.cli import main
from lab.db import normalize_url
from lab.errors import ConfigError
from lab.gateway import GatewayStore, running
from lab.gateway.recorder import Recorder
from lab.gateway.store import metadata as gateway_metadata
from lab.store import Store
from lab.store.schema import metadata as store_metadata

CACHE = [{"stage": "cache", "ttl_s": 600}]
PG_URL = os.environ.get("COSTLAB_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh database: a SQLite file, or the scratch PostgreSQL of $COSTLAB_TEST_POSTGRES_URL, wiped."""
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    if not PG_URL:
        pytest.skip("set COSTLAB_TEST_POSTGRES_URL to a scratch PostgreSQL database")
    engine = sa.create_engine(normalize_url(PG_URL))
    with engine.begin() as conn:
        for table in [*reversed(gateway_metadata.sorted_tables), *reversed(store_metadata.sorted_tables)]:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name} CASCADE")
    engine.dispose()
    return PG_URL


def _calls(url: str, token: str, n: int, offset: int = 0) -> None:
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    for k in range(offset, offset + n):
        try:
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
                                           messages=[{"role": "user", "content": f"question {k % 25}"}])
        except openai.APIStatusError:
            pass     # a refusal is a ledger row too


def _check_same_rows(recorded: pd.DataFrame, gateway: pd.DataFrame) -> None:
    assert len(recorded) == len(gateway) > 0
    assert recorded["request_id"].is_unique
    assert set(recorded["request_id"]) == set(gateway["request_id"])
    assert float(recorded["cost_usd"].sum()) == pytest.approx(float(gateway["cost_usd"].sum()), rel=1e-12, abs=1e-15)


def test_every_call_is_a_row_of_the_recorded_run(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    db = str(tmp_path / "class.db")
    config = gateway_config(fake, db, CACHE)
    with running(config) as (url, gw):
        _calls(url, gw.store.add_learner("ada", daily_usd=0.0002), 40)   # cache hits, misses and refusals
    rows = GatewayStore(db).ledger()
    assert set(rows.outcome) >= {"ok", "cache_hit", "rejected"}
    runs = lab.store.use(db).runs(experiment="gateway")
    assert list(runs.kind) == ["recorded"] and list(runs.status) == ["complete"]
    run_id = int(runs.run_id.iloc[0])
    back = lab.store.use(db).load(run_id)
    assert isinstance(back, lab.store.RecordedRun)
    _check_same_rows(back.ledger, rows)
    assert {"learner", "endpoint", "overhead_ms"} <= set(back.ledger.columns)
    assert back.summary()["cost_usd"] == pytest.approx(float(rows.cost_usd.sum()))
    assert int(runs.requests.iloc[0]) == len(rows)

    with running(config) as (url, gw):                  # a restart carries on the same run
        _calls(url, gw.store.add_learner("bo", daily_usd=1.0), 7, offset=100)
    rows = GatewayStore(db).ledger()
    assert list(lab.store.use(db).runs(experiment="gateway").run_id) == [run_id]
    _check_same_rows(lab.store.use(db).ledger(run_id), rows)

    out = tmp_path / "recorded.parquet"               # `costlab runs export` and `costlab twin` read it
    assert main(["runs", "export", str(run_id), "--ledger", str(out), "--store", db]) == 0
    assert main(["twin", str(out), "--out", str(tmp_path / "twin.toml")]) == 0
    assert (tmp_path / "twin.toml").is_file()
    capsys.readouterr()


def test_no_experiment_records_nothing(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    db = str(tmp_path / "solo.db")
    with running(gateway_config(fake, db, gateway={"store": db, "experiment": ""})) as (url, gw):
        _calls(url, gw.store.add_learner("cy"), 3)
    assert Store(db).runs().empty and len(GatewayStore(db).ledger()) == 3


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"request_id": f"r{k:05d}", "t_arrival_s": 1000.0 + k, "provider": "openai", "model": "gpt-4o-mini",
             "learner": "ada", "tenant": "ada", "endpoint": "/openai/v1/chat/completions", "outcome": "ok",
             "input_tokens": 10, "output_tokens": 5, "cost_usd": 1e-6 * (k + 1), "baseline_cost_usd": 2e-6 * (k + 1),
             "latency_ms": 10.0, "overhead_ms": 0.5} for k in range(start, start + n)]


class Crash(Exception):
    """A process dying at this point of a flush."""


@pytest.mark.parametrize("crash_at", ["after_claim", "after_append"])
def test_a_flush_cut_short_is_finished_after_a_restart_without_doubles(url, monkeypatch, crash_at):
    db = url
    gstore = GatewayStore(db)
    for row in _rows(25):
        gstore.record(row)
    recorder = Recorder(gstore, Store(db), "gateway", flush_rows=10)
    assert recorder.flush() == 25 and recorder.flush() == 0          # flushing twice adds nothing
    for row in _rows(12, start=25):
        gstore.record(row)
    if crash_at == "after_claim":
        monkeypatch.setattr(Store, "append_ledger", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    else:
        monkeypatch.setattr(GatewayStore, "flushed", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        recorder.flush()
    monkeypatch.undo()
    assert len(gstore.pending_chunks()) == 1

    again = Recorder(GatewayStore(db), Store(db), "gateway", flush_rows=10)    # the restarted process
    assert again.run_id == recorder.run_id
    again.flush()
    again.flush()
    assert not again.gateway_store.pending_chunks()
    stored = Store(db).ledger(again.run_id)
    _check_same_rows(stored, gstore.ledger())
    assert list(stored.request_id) == sorted(stored.request_id)        # oldest first, chunk by chunk
    assert Store(db).row(again.run_id)["ledger_rows"] == 37


def test_an_open_recorded_run_reads_its_summary_after_every_flush(tmp_path):
    db = str(tmp_path / "class.db")
    gstore = GatewayStore(db)
    recorder = Recorder(gstore, Store(db), "gateway", flush_rows=10)
    for n in (7, 30):                        # one short flush, then three chunks: the summary follows each
        for row in _rows(n, start=len(gstore.ledger())):
            gstore.record(row)
        recorder.flush()
        rows, run = gstore.ledger(), lab.store.use(db).runs(experiment="gateway").iloc[0]
        assert run.status == "open" and int(run.requests) == len(rows)
        assert run.cost_usd == pytest.approx(float(rows.cost_usd.sum()), rel=1e-12)
        assert run.baseline_cost_usd == pytest.approx(float(rows.baseline_cost_usd.sum()), rel=1e-12)
    recorder.stop()                          # the summary made from the whole ledger at the end agrees
    run = lab.store.use(db).runs(experiment="gateway").iloc[0]
    assert run.status == "complete" and run.cost_usd == pytest.approx(float(gstore.ledger().cost_usd.sum()))


def test_a_chunk_number_holding_other_rows_is_refused(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = store.open_recorded("gateway")
    first = pd.DataFrame(_rows(3))
    assert store.append_ledger(run_id, first, seq=0) == 3
    assert store.append_ledger(run_id, first, seq=0) == 3                # the same chunk again: nothing added
    with pytest.raises(ConfigError, match="chunk 0 of run .* holds other rows"):
        store.append_ledger(run_id, pd.DataFrame(_rows(3, start=3)), seq=0)
    assert store.open_recorded("gateway") == run_id and store.chunks(run_id) == 1


def _serve(config_path, env):
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "gateway", "serve", "--config", str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    assert match, line + proc.stdout.read()
    return proc, match.group(1)


@pytest.mark.timeout(300)
def test_a_killed_gateway_loses_nothing_and_sigterm_flushes(fake, tmp_path, root):
    db = tmp_path / "class.db"
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(f'[gateway]\nport = 0\nstore = "{db.name}"\nflush_s = 60\n[[upstreams]]\n'
                           f'provider = "openai"\nbase_url = "{fake.base_url("openai")}"\nkey_env = "{KEY_ENV}"\n')
    token = GatewayStore(str(db)).add_learner("ann", daily_usd=1.0)
    env = {**os.environ, KEY_ENV: FAKE_KEY, "PYTHONPATH": str(root)}
    proc, url = _serve(config_path, env)
    _calls(url, token, 9)
    proc.send_signal(signal.SIGKILL)                       # no final flush: the rows wait in gateway_ledger
    proc.wait(10)
    proc, url = _serve(config_path, env)
    _calls(url, token, 4, offset=9)
    proc.send_signal(signal.SIGTERM)                       # a graceful stop flushes everything
    proc.wait(30)
    run_id = int(Store(db).runs(experiment="gateway").run_id.iloc[0])
    _check_same_rows(Store(db).ledger(run_id), GatewayStore(str(db)).ledger())
    assert len(GatewayStore(str(db)).ledger()) == 13
