"""`costlab call` against the fake server for all three providers, `costlab fake-server`, and keys kept secret.

The secrecy test sets a recognisable fake key in every provider's variable, makes the
SDKs fail with messages that contain it, runs the CLI, a cassette and a live-backed
simulation's ledger, and searches everything written for it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import traceback

import httpx
import numpy as np
import pytest
from genai_prices import extract_usage

from lab.cli import main
from lab.live import Session
from lab.pricing import PRICE_DATE
from lab.providers.fake_server import FakeProviderServer
from lab.providers.sdk import KEY_ENV_VARS, ProviderError

FAKE_KEY = "sk-test-SECRET-123"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.5-flash"}
CONTRACT_KEYS = {"provider", "model", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd", "latency_ms"}


@pytest.fixture
def fake():
    with FakeProviderServer(port=0) as server:
        yield server


@pytest.fixture(autouse=True)
def fake_keys(monkeypatch):
    for names in KEY_ENV_VARS.values():
        for name in names:
            monkeypatch.setenv(name, FAKE_KEY)


@pytest.mark.parametrize("provider", list(MODELS))
def test_costlab_call_json_for_each_provider(fake, capsys, provider):
    prompt = "Explain prompt caching in one sentence. " * 400   # above every minimum used here (Gemini 2.5 Flash: 2,048)
    args = ["call", provider, MODELS[provider], prompt, "--base-url", fake.base_url(provider), "--max-tokens", "40",
            "--json"]
    if provider == "anthropic":
        args += ["--cache", "5m"]
    outputs = []
    for _ in range(2):
        assert main(args) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    first, second = outputs
    assert set(first) == CONTRACT_KEYS and first["provider"] == provider and first["model"] == MODELS[provider]
    wire = fake.calls[-1]["response"]
    flavor = "chat" if provider == "openai" else "default"
    expected = float(extract_usage(wire, provider_id=provider, api_flavor=flavor)
                     .calc_price(genai_request_timestamp=PRICE_DATE).total_price)
    assert second["cost_usd"] == pytest.approx(expected, rel=1e-12)
    assert first["cached_input_tokens"] == 0 and second["cached_input_tokens"] > 1000
    assert second["input_tokens"] == first["input_tokens"] and second["output_tokens"] <= 40
    assert second["latency_ms"] > 0


@pytest.mark.parametrize("provider", list(MODELS))
def test_costlab_call_prints_tokens_cost_and_latency(fake, capsys, provider):
    assert main(["call", provider, MODELS[provider], "Hello!", "--base-url", fake.base_url(provider),
                 "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert f"{provider}/{MODELS[provider]}:" in out and "input tokens (0 cached)" in out and "8 output tokens" in out
    assert "cost $" in out and " ms" in out and "budget left" in out


def test_costlab_call_errors_are_one_line_with_exit_2(fake, capsys):
    fake.fail_next(1, 400)
    assert main(["call", "openai", "gpt-4o-mini", "hi", "--base-url", fake.base_url("openai")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("costlab: error: openai at") and "HTTP 400" in err and err.count("\n") == 1
    assert main(["call", "openai", "gpt-4o-mini", "hi", "--base-url", fake.base_url("openai"),
                 "--max-tokens", "100000", "--budget-usd", "0.001"]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["call", "openai", "gpt-4o-mini", "hi", "--replay"]) == 2
    assert "needs a cassette" in capsys.readouterr().err


def test_costlab_call_records_and_replays(fake, capsys, tmp_path):
    cassette = str(tmp_path / "c.jsonl")
    base = ["call", "google", MODELS["google"], "What is a token?", "--max-tokens", "16", "--json", "--cassette", cassette]
    assert main(base + ["--base-url", fake.base_url("google")]) == 0
    live = json.loads(capsys.readouterr().out)
    fake.stop()
    assert main(base + ["--replay"]) == 0
    assert json.loads(capsys.readouterr().out) == live


def test_costlab_fake_server_command_serves_until_interrupted(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "fake-server", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.startswith("costlab fake provider server on http://127.0.0.1:")
        url = first.split(" on ")[1].split()[0]
        lines = [proc.stdout.readline() for _ in range(3)]
        assert f"--base-url {url}/v1" in lines[0]
        result = Session(budget_usd=0.1, base_url=f"{url}/v1").call("openai", "gpt-4o-mini", prompt="hi", max_tokens=5)
        assert result.output_tokens == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out and FAKE_KEY not in out + err


def _sdk_errors_carrying_the_key(url):
    """What each SDK raises when a provider's message quotes the key (OpenAI's 401 does)."""
    import anthropic
    import openai
    from google.genai import errors as genai_errors

    request = httpx.Request("POST", f"{url}?key={FAKE_KEY}", headers={"authorization": f"Bearer {FAKE_KEY}"})
    response = httpx.Response(401, request=request, headers={"x-echo": FAKE_KEY})
    return {
        "openai": openai.AuthenticationError(f"Incorrect API key provided: {FAKE_KEY}.", response=response, body=None),
        "anthropic": anthropic.AuthenticationError(f"invalid x-api-key {FAKE_KEY}", response=response, body=None),
        "google": genai_errors.ClientError(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                          "message": f"API key not valid: {FAKE_KEY}"}}, response),
    }


def test_a_key_appears_in_no_output_cassette_ledger_log_or_exception(fake, capsys, caplog, tmp_path, monkeypatch):
    from helpers import scenario
    from test_live_sim import LiveConfig

    from lab.ledger import build_ledger
    from lab.providers.sdk import LiveProvider
    from lab.sim import Simulation
    from lab.traffic import make_requests

    caplog.set_level(logging.DEBUG)
    cassette = tmp_path / "calls.jsonl"
    texts = []
    # the command line: successes and a failure, recorded to a cassette
    for provider, model in MODELS.items():
        assert main(["call", provider, model, "Hello", "--base-url", fake.base_url(provider), "--cassette",
                     str(cassette)]) == 0
        assert main(["call", provider, model, "Hello", "--base-url", fake.base_url(provider), "--json"]) == 0
        fake.fail_next(1, 401)
        assert main(["call", provider, model, "Hi", "--base-url", fake.base_url(provider), "--cassette",
                     str(cassette)]) == 2
    # SDK exceptions whose messages and requests carry the key
    session = Session(budget_usd=1.0, cassette=cassette, base_url=fake.base_urls())
    for provider, sdk_error in _sdk_errors_carrying_the_key(fake.url).items():
        adapter = session._adapter(provider)

        def raise_it(body, error=sdk_error):
            raise error
        monkeypatch.setattr(adapter, "_send", raise_it)
        with pytest.raises(ProviderError) as caught:
            session.call(provider, MODELS[provider], prompt="Hello", max_tokens=5)
        error = caught.value
        assert error.__context__ is None and error.__cause__ is None   # the SDK error is not chained
        texts += [str(error), repr(error), "".join(traceback.format_exception(error)), repr(adapter)]
    # a live-backed simulation's ledger
    sc = scenario(requests=5)
    stream = make_requests(sc, np.random.default_rng(0), None)
    sim = Simulation(sc, stream, 0, optimized=False, progress=False)
    config = LiveConfig("openai", "gpt-4o-mini", base_url=fake.base_url("openai"), cassette=str(cassette))
    sim.providers = [LiveProvider(sim, config, 0)]
    run = sim.run_to_end()
    ledger = build_ledger(stream, run, run, ["openai"], ["gpt-4o-mini"], [])
    ledger.to_csv(tmp_path / "ledger.csv", index=False)

    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text, cassette.read_text(), (tmp_path / "ledger.csv").read_text(),
              json.dumps(list(fake.calls)), json.dumps(fake.stats())]
    assert "Hello" in cassette.read_text() and "HTTP 401" in cassette.read_text()   # the search looked at real text
    for text in texts:
        assert FAKE_KEY not in text
        assert "SECRET" not in text
