"""`[gateway] workers = 2`: two forked processes accepting on one address, one SQLite store, under the storm.

The caps, spend and ledger are rows in the store, so the 1,000-request storm of test_gateway_limits
must give the same guarantees through two processes as through one: no learner past their cap on
billed cost, at least 95 % of each cap usable, no ledger row lost or doubled. Both workers must
have answered (their pids, from /healthz over fresh connections), SIGTERM must stop every process,
and the keeper process (the one recorder) must have copied every process's rows into the recorded run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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
from test_gateway_postgres import _address

import lab.store
from lab.gateway.store import GatewayStore


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return {int(x) for x in fh.read().split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(300)
def test_two_workers_on_one_address_hold_every_cap(fake, tmp_path, root):
    db = str(tmp_path / "class.db")
    store = GatewayStore(db)
    cap_usd = CAP_IN_CALLS * _dearest_usd()      # as in test_gateway_limits: 16 of 20 calls fit
    tokens = _learners(store, cap_usd)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nport = 0\nstore = "{db}"\nworkers = 2\n[[upstreams]]\nprovider = "openai"\n'
                      f'base_url = "{fake.base_url("openai")}"\nkey_env = "{KEY_ENV}"\n')
    log = tmp_path / "gateway.log"
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "gateway", "serve", "--config", str(config)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, KEY_ENV: FAKE_KEY, "PYTHONPATH": str(root)})
    workers: set[int] = set()
    try:
        url = _address(proc, log)
        assert "2 worker processes" in log.read_text()
        pids = set()
        for _ in range(200):              # fresh connections until both workers have answered one
            pids.add(httpx.get(f"{url}/healthz", timeout=30).json()["pid"])
            if len(pids) == 2:
                break
        workers = _children(proc.pid)    # the two serving processes and the keeper (recorder, checkpoints)
        assert len(workers) == 3 and len(pids) == 2 and pids < workers, (pids, workers, log.read_text()[-2000:])
        statuses = asyncio.run(_storm(url, tokens))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-4000:]
    assert not any(_alive(pid) for pid in workers), "a worker or the keeper outlived the gateway"
    rows = _check_no_row_lost_or_doubled(fake, types.SimpleNamespace(store=store), statuses)
    spent = _learner_spend(rows, cap_usd)
    runs = lab.store.use(db).runs(experiment="gateway")
    assert list(runs.status) == ["complete"] and int(runs.requests.iloc[0]) == len(rows)
    back = lab.store.use(db).load(int(runs.run_id.iloc[0]))
    assert set(back.ledger.request_id) == set(rows.request_id)
    print(f"\ntwo workers, one SQLite store: {statuses[200]} served, {statuses[429]} refused; spend/cap min "
          f"{spent.min() / cap_usd:.4f} max {spent.max() / cap_usd:.4f}")
