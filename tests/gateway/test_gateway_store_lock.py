"""While another connection holds the SQLite store's write lock (the recorder claiming a chunk, a
second gateway process, a `learner add`), calls wait for it without stopping the event loop:
the gateway goes on answering, and the calls that waited are held, settled and recorded once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import sqlalchemy as sa
from conftest import FAKE_KEY, KEY_ENV

from lab.gateway.store import today

HOLD_S = 0.6


def test_calls_wait_for_a_held_store_lock_while_the_gateway_answers(gateway, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    url, gw = gateway()
    token = gw.store.add_learner("ana", daily_usd=1.0)
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "warm"}])

    taken, release = threading.Event(), threading.Event()

    def hold():
        with gw.store.engine.begin() as conn:     # BEGIN IMMEDIATE: SQLite's write lock
            conn.execute(sa.text("SELECT 1"))
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(client.chat.completions.create, model="gpt-4o-mini", max_tokens=5,
                             messages=[{"role": "user", "content": f"question {k}"}]) for k in range(4)]
        time.sleep(0.1)
        started = time.perf_counter()
        health = [httpx.get(f"{url}/healthz", timeout=5).status_code for _ in range(5)]
        answered_s = time.perf_counter() - started
        assert not any(c.done() for c in calls)          # they wait for the lock...
        time.sleep(max(0.0, HOLD_S - (time.perf_counter() - started)))
        release.set()
        holder.join()
        answers = [c.result(timeout=30) for c in calls]   # ...and go through once it is free
    assert health == [200] * 5 and answered_s < HOLD_S / 2, answered_s   # a blocked loop answers none until then
    ledger = gw.store.ledger("ana")
    assert len(ledger) == 5 and ledger["request_id"].is_unique and set(ledger["outcome"]) == {"ok"}
    spent, held = gw.store.spent("learner:ana", today())
    assert held == 0.0
    assert all(a.usage.completion_tokens > 0 for a in answers)
    assert spent == pytest.approx(float(ledger["cost_usd"].sum()), rel=1e-12) and spent > 0
