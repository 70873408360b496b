"""An upstream that breaks off its answer mid-body: the caller gets a 502 in its provider's shape,
the hold taken for the call is released (nothing billed, nothing left held), and the ledger says so.
An upstream that gzips its answer although asked not to: decoded, priced and passed on plain."""

from __future__ import annotations

import gzip
import json
import socket
import threading

import openai
import pytest
from conftest import FAKE_KEY, KEY_ENV

from lab.gateway import config_from_dict, running
from lab.gateway.store import today
from lab.pricing import price_usage_exact


def _raw_upstream(reply: bytes) -> tuple[socket.socket, int]:
    """A server that reads each request and sends `reply`, byte for byte, then hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _breaking_upstream() -> tuple[socket.socket, int]:
    """A head promising 1,000 bytes, then 10 of them."""
    return _raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                         b'{"id": "x"')


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


def _gzip_upstream() -> tuple[socket.socket, int]:
    """An upstream that ignores `accept-encoding: identity` and gzips its (OpenAI-shaped) answer."""
    answer = json.dumps({"id": "chatcmpl-gz", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "zipped hello"},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}).encode()
    body = gzip.compress(answer)
    return _raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                         b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


def test_a_gzipped_answer_is_decoded_priced_and_passed_on_plain(tmp_path, monkeypatch):
    """The gateway reads identity answers raw off the stream; any other encoding still goes through
    httpx's decoder, so the caller and the bill see the JSON (12 + 3 tokens at genai-prices' gpt-4o-mini)."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    server, port = _gzip_upstream()
    config = config_from_dict({"gateway": {"store": str(tmp_path / "gw.db")},
                               "upstreams": [{"provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                              "key_env": KEY_ENV}]})
    try:
        with running(config) as (url, gw):
            client = openai.OpenAI(api_key=gw.store.add_learner("gus"), base_url=f"{url}/openai/v1", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
            answer = raw.parse()
            assert answer.choices[0].message.content == "zipped hello"
            expected = price_usage_exact("openai", "gpt-4o-mini", input_tokens=12, output_tokens=3)
            assert float(raw.headers["x-costlab-cost-usd"]) == pytest.approx(expected, rel=1e-6)
            row = gw.store.ledger().iloc[0]
            assert (row.outcome, int(row.input_tokens), int(row.output_tokens)) == ("ok", 12, 3)
    finally:
        server.close()
