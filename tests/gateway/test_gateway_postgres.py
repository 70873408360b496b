"""Two gateway processes behind one class, sharing one PostgreSQL store, under the 1,000-request storm.

Runs when COSTLAB_TEST_POSTGRES_URL names a database it may wipe (CI sets it; see RECIPES);
skipped otherwise. Budgets and the ledger live in the database, so the learner caps hold
across the two processes exactly as they do in one (the same numbers as test_gateway_limits).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import types

import httpx
import pytest
from conftest import FAKE_KEY, KEY_ENV
from test_gateway_limits import (
    CAP_IN_CALLS,
    _check_no_row_lost_or_doubled,
    _dearest_usd,
    _learner_spend,
    _learners,
    _storm,
)

from lab.gateway.store import GatewayStore

URL = os.environ.get("COSTLAB_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set COSTLAB_TEST_POSTGRES_URL to a scratch PostgreSQL database")


def _wipe(url: str) -> None:
    import psycopg  # reason: optional driver

    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("gateway_ledger", "spend", "learners"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def _address(proc: subprocess.Popen, log) -> str:
    """The URL a starting gateway prints on its first line (read from its log file)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"(http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the gateway did not start (exit {proc.poll()}):\n{log.read_text()[-4000:]}")


@pytest.mark.timeout(600)
def test_two_gateway_processes_share_the_caps(fake, tmp_path, root):
    _wipe(URL)
    store = GatewayStore(URL)
    cap_usd = CAP_IN_CALLS * _dearest_usd()      # as in test_gateway_limits: 16 of 20 calls fit
    tokens = _learners(store, cap_usd)
    env = {**os.environ, KEY_ENV: FAKE_KEY, "PYTHONPATH": str(root)}
    procs, urls = [], []
    try:
        for n in range(2):
            config = tmp_path / f"gw{n}.toml"
            config.write_text(f'[gateway]\nport = 0\nstore = "{URL}"\n[[upstreams]]\nprovider = "openai"\n'
                              f'base_url = "{fake.base_url("openai")}"\nkey_env = "{KEY_ENV}"\n')
            log = tmp_path / f"gw{n}.log"      # a file, not a pipe: a full pipe would stall the gateway
            proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "gateway", "serve", "--config", str(config)],
                                    stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, text=True)
            procs.append(proc)
            urls.append(_address(proc, log))
        try:
            statuses = asyncio.run(_storm(urls, tokens))
        except httpx.HTTPError as exc:
            logs = "\n".join(f"--- gateway {n} (exit {p.poll()}):\n" + (tmp_path / f"gw{n}.log").read_text()[-4000:]
                             for n, p in enumerate(procs))
            raise AssertionError(f"the storm failed ({type(exc).__name__}: {exc}); the gateways said:\n{logs}") from exc
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    rows = _check_no_row_lost_or_doubled(fake, types.SimpleNamespace(store=store), statuses)
    spent = _learner_spend(rows, cap_usd)
    assert set(rows.endpoint) == {"/openai/v1/chat/completions"}
    print(f"\ntwo processes, one PostgreSQL: {statuses[200]} served, {statuses[429]} refused; spend/cap min "
          f"{spent.min() / cap_usd:.4f} max {spent.max() / cap_usd:.4f}")
