"""`lab.db.RawTransactions` on SQLite while another connection holds the write lock.

The gateway's hold and settlement run on the event loop's thread. SQLite's own busy handler sleeps
1, 2, 5, 10, 15, 20 ... ms between tries (sqlite3.c, `sqliteDefaultBusyCallback`), and the loop
stood still meanwhile: a 12 ms flush by the recorder cost every call in flight 33 ms. Here a busy
lock raises `Busy` at once (`begin(wait=False)`), `run` lets the loop serve others while it waits,
and a settlement cancelled while it waits still lands.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import sqlalchemy as sa

from lab.db import Busy, RawTransactions, open_engine


@pytest.fixture
def engine(tmp_path):
    engine = open_engine(tmp_path / "t.db", "test")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 0)"))
    yield engine
    engine.dispose()


def _hold_lock(engine, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Another connection takes the write lock (BEGIN IMMEDIATE) and keeps it `seconds`."""
    taken = threading.Event()

    def hold():
        with engine.begin() as conn:          # open_engine's writers: BEGIN IMMEDIATE
            conn.execute(sa.text("UPDATE t SET v = v + 100 WHERE k = 1"))
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    return thread, taken


def _value(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT v FROM t WHERE k = 1")).scalar_one()


def _add_one(cur) -> None:
    cur.execute("UPDATE t SET v = v + 1 WHERE k = 1")


def test_a_busy_lock_raises_busy_at_once_and_the_connection_stays(engine):
    hot = RawTransactions(engine)
    with hot.begin() as cur:                 # the thread's connection is held from here on
        _add_one(cur)
    held = hot._held.fairy
    thread, _ = _hold_lock(engine, 0.3)
    t0 = time.perf_counter()
    with pytest.raises(Busy), hot.begin(wait=False) as cur:
        _add_one(cur)
    assert time.perf_counter() - t0 < 0.1               # no busy handler slept
    thread.join()
    assert hot._held.fairy is held                      # not dropped as a broken connection
    with hot.begin() as cur:
        _add_one(cur)
    assert _value(engine) == 102


def test_begin_waits_for_the_lock_and_then_writes(engine):
    hot = RawTransactions(engine)
    thread, _ = _hold_lock(engine, 0.15)
    with hot.begin() as cur:
        _add_one(cur)
    thread.join()
    assert _value(engine) == 101


def test_run_lets_the_event_loop_serve_while_it_waits(engine):
    hot = RawTransactions(engine)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick = asyncio.create_task(ticker())
        thread, _ = _hold_lock(engine, 0.3)
        await hot.run(_add_one)
        tick.cancel()
        thread.join()
        return ticks

    ticks = asyncio.run(main())
    # a blocking wait would have let the 5 ms ticker run ~0 times in the lock's 300 ms
    assert ticks >= 20, ticks
    assert _value(engine) == 101


@pytest.mark.parametrize("finish_on_cancel", [True, False])
def test_cancelled_while_waiting_a_settlement_still_lands_a_hold_never(engine, finish_on_cancel):
    hot = RawTransactions(engine)

    async def main():
        thread, _ = _hold_lock(engine, 0.2)
        task = asyncio.create_task(hot.run(_add_one, finish_on_cancel=finish_on_cancel))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        thread.join()

    asyncio.run(main())
    assert _value(engine) == (101 if finish_on_cancel else 100)


def test_an_error_in_the_work_rolls_back_and_is_raised(engine):
    hot = RawTransactions(engine)

    def fail(cur):
        _add_one(cur)
        raise ValueError("refused")

    with pytest.raises(ValueError):
        asyncio.run(hot.run(fail))
    assert _value(engine) == 0
    with hot.begin() as cur:                 # the connection is fine afterwards
        _add_one(cur)
    assert _value(engine) == 1


def test_the_connection_goes_back_to_the_pool_waiting_for_locks_again(engine):
    hot = RawTransactions(engine)
    hot.autocheckpoint = False
    with hot.begin() as cur:
        assert cur.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        assert cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    conn = hot._held.fairy.driver_connection
    hot.close()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60_000      # open_engine's busy timeout
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # SQLite's default
