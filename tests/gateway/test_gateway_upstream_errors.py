"""An upstream that breaks off its answer mid-body: the caller gets a 502 in its provider's shape,
the hold taken for the call is released (nothing billed, nothing left held), and the ledger says so."""

from __future__ import annotations

import socket
import threading

import openai
import pytest
from conftest import FAKE_KEY, KEY_ENV

from lab.gateway import config_from_dict, running
from lab.gateway.store import today


def _breaking_upstream() -> tuple[socket.socket, int]:
    """A server that answers every request with a head promising 1,000 bytes, sends 10 and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                             b'{"id": "x"')

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_an_answer_broken_off_mid_body_releases_its_hold(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    server, port = _breaking_upstream()
    config = config_from_dict({"gateway": {"store": str(tmp_path / "gw.db")}, "class": {"daily_usd": 1.0},
                               "upstreams": [{"provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                              "key_env": KEY_ENV}]})
    try:
        with running(config) as (url, gw):
            client = openai.OpenAI(api_key=gw.store.add_learner("ada", daily_usd=0.5), base_url=f"{url}/openai/v1",
                                   max_retries=0)
            for _ in range(3):
                with pytest.raises(openai.APIStatusError, match="broke off its answer") as exc:
                    client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
                                                   messages=[{"role": "user", "content": "Hi"}])
                assert exc.value.status_code == 502
            for scope in ("class", "learner:ada"):
                assert gw.store.spent(scope, today()) == (0.0, pytest.approx(0.0, abs=1e-12))
            rows = gw.store.ledger()
            assert list(rows.outcome) == ["error"] * 3 and list(rows.status) == [502] * 3
            assert FAKE_KEY not in rows.to_csv()
    finally:
        server.close()
