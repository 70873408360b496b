"""The class's key never leaves the gateway; unknown and revoked tokens are refused; learners see only their own usage.

A recognisable fake upstream key is searched for, as a plain substring, in every response
body and header, every log line and printed line, the ledger, the store's file and the
metrics, after successful calls, scripted upstream failures (with retries) and an upstream
that echoes the key back in its error message, as the real OpenAI API does for a bad key.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from conftest import FAKE_KEY, KEY_ENV
from google import genai
from google.genai import types

from lab.gateway import config_from_dict, running


class _EchoKey(BaseHTTPRequestHandler):
    """An upstream that answers 401 quoting the key it was sent (hostile to a gateway that forwards errors)."""

    def do_POST(self):  # noqa: N802
        key = self.headers.get("authorization", "")[7:]
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_upstream_key_is_never_found(fake, gateway, tmp_path, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    url, gw = gateway(pipeline=[{"stage": "retry", "max_attempts": 2, "base_ms": 1, "jitter": False}])
    token = gw.store.add_learner("fay", daily_usd=1.0)
    seen: list[str] = []

    def keep(r: httpx.Response) -> None:
        seen.extend((r.text, json.dumps(dict(r.headers))))

    raw = {  # each provider's own request, sent as plain HTTP so every byte and header is kept
        "openai": ("/openai/v1/chat/completions", {"authorization": f"Bearer {token}"},
                   {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}),
        "anthropic": ("/anthropic/v1/messages", {"x-api-key": token},
                      {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
        "google": ("/google/v1beta/models/gemini-2.5-flash:generateContent", {"x-goog-api-key": token},
                   {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    }
    oa = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    an = anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic", max_retries=0)
    gg = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=f"{url}/google"))
    sdk_calls = {
        "openai": lambda: oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                     max_tokens=20),
        "anthropic": lambda: an.messages.create(model="claude-haiku-4-5", max_tokens=20,
                                                messages=[{"role": "user", "content": "hi"}]),
        "google": lambda: gg.models.generate_content(model="gemini-2.5-flash", contents="hi"),
    }
    errors, statuses = [], []
    for fail in (None, 429, 500, 503):
        for provider, (path, headers, body) in raw.items():
            if fail:
                fake.fail_next(2, status=fail, provider=provider)   # both attempts fail: the error reaches the learner
            r = httpx.post(url + path, headers=headers, json=body, params={"stream": "x"}, timeout=30)
            keep(r)
            statuses.append(r.status_code)
            if fail:
                fake.fail_next(2, status=fail, provider=provider)
            try:
                seen.append(repr(sdk_calls[provider]()))
            except (openai.APIError, anthropic.APIError, genai.errors.APIError) as exc:
                errors.append(str(exc))
    assert statuses.count(200) == 3 and len(errors) == 9   # three failures each for three providers

    # an upstream that quotes the key in its error
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKey)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    config = config_from_dict({"gateway": {"store": str(tmp_path / "echo.db")}, "upstreams": [
        {"provider": "openai", "base_url": f"http://127.0.0.1:{echo.server_address[1]}/v1", "key_env": KEY_ENV}]})
    with running(config) as (echo_url, echo_gw):
        t = echo_gw.store.add_learner("gus")
        with pytest.raises(openai.AuthenticationError) as info:
            openai.OpenAI(api_key=t, base_url=f"{echo_url}/openai/v1", max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        errors.append(str(info.value))
        keep(httpx.post(f"{echo_url}/openai/v1/chat/completions", headers={"authorization": f"Bearer {t}"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        assert "Incorrect API key provided" in str(info.value)   # the message passes, the key does not
        seen.append(echo_gw.store.ledger().to_csv())
        seen.append(echo_gw.metrics.text().decode())
    echo.shutdown()

    seen += [gw.store.ledger().to_csv(), gw.metrics.text().decode(), httpx.get(f"{url}/healthz").text,
             httpx.get(f"{url}/metrics").text]
    seen += [r.getMessage() for r in caplog.records] + errors + list(capsys.readouterr())
    seen += [p.read_bytes().decode("latin-1") for p in Path(tmp_path).glob("*.db*")]
    assert len(seen) > 40
    for text in seen:
        assert FAKE_KEY not in text


def test_unknown_and_revoked_tokens_are_refused(fake, gateway):
    url, gw = gateway()
    token = gw.store.add_learner("hal")
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    ask = lambda c: c.chat.completions.create(model="gpt-4o-mini",  # noqa: E731
                                              messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    ask(client)
    for bad in ("clab_not-a-token", "", token + "x", FAKE_KEY):
        with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
            ask(openai.OpenAI(api_key=bad or "-", base_url=f"{url}/openai/v1", max_retries=0))
    gw.store.revoke("hal")
    with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
        ask(client)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic", max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert fake.calls_total() == 1
    assert token not in Path(gw.store.url).read_bytes().decode("latin-1")    # only the hash is stored


def test_a_learner_reads_only_their_own_usage(fake, gateway):
    url, gw = gateway()
    alice, bob = gw.store.add_learner("alice"), gw.store.add_learner("bob")
    openai.OpenAI(api_key=bob, base_url=f"{url}/openai/v1").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    mine = httpx.get(f"{url}/costlab/usage", headers={"authorization": f"Bearer {alice}"},
                     params={"learner": "bob"}).json()
    assert mine["learner"] == "alice" and mine["calls"] == 0
    assert httpx.get(f"{url}/costlab/usage", headers={"authorization": f"Bearer {bob}"}).json()["calls"] == 1
    assert httpx.get(f"{url}/costlab/usage").status_code == 401


class _Hub(BaseHTTPRequestHandler):
    """A stand-in for JupyterHub's REST API: GET /hub/api/user names the owner of a valid token."""

    tokens = {"hub-token-of-zoe": "zoe"}

    def do_GET(self):  # noqa: N802
        name = self.tokens.get(self.headers.get("authorization", "").removeprefix("token "))
        body = json.dumps({"name": name, "kind": "user"} if name else {"status": 403, "message": "no"}).encode()
        self.send_response(200 if name and self.path == "/hub/api/user" else 403)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_hub_token_is_a_learner_with_the_default_limits(fake, tmp_path, monkeypatch):
    """Not a real JupyterHub (see the README): its /hub/api/user answer, as the gateway asks for it."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    config = config_from_dict({"gateway": {"store": str(tmp_path / "hub.db"),
                                           "hub_api_url": f"http://127.0.0.1:{hub.server_address[1]}/hub/api"},
                               "learners": {"daily_usd": 0.5},
                               "upstreams": [{"provider": "openai", "base_url": fake.base_url("openai"),
                                              "key_env": KEY_ENV}]})
    with running(config) as (url, gw):
        client = openai.OpenAI(api_key="hub-token-of-zoe", base_url=f"{url}/openai/v1", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=5)
        zoe = gw.store.learner("zoe")
        assert zoe.source == "hub" and zoe.daily_usd == 0.5
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="hub-token-of-nobody", base_url=f"{url}/openai/v1", max_retries=0) \
                .chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        gw.store.revoke("zoe")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    hub.shutdown()
