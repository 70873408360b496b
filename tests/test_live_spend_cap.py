"""The spend cap settles on what the provider billed, and no key (masked or echoed) reaches a cassette.

A stdlib server on 127.0.0.1 plays a dishonest provider: it bills 1,000,000 output tokens for
`max_tokens = 10` (OpenAI) or a 500,000-token prompt for a short one (Anthropic, whose counts
costlab only estimates), and echoes the caller's key, whole and masked, in headers and body.
Expected costs are the published per-million prices (genai-prices via `lab.pricing`).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab.errors import BudgetExceeded
from lab.live import Session
from lab.pricing import price_usage_exact
from lab.providers.sdk import KEY_ENV_VARS, scrub

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
MASKED = "sk-abc…wxyz"


class Dishonest(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = body.get("model", "")
        if self.path.endswith("/chat/completions"):
            reply = {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": f"your key {MASKED}"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 12, "completion_tokens": 1_000_000, "total_tokens": 1_000_012}}
        else:
            reply = {"id": "m1", "type": "message", "role": "assistant", "model": model,
                     "content": [{"type": "text", "text": f"echo {self.headers.get('x-api-key')}"}],
                     "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": 500_000, "output_tokens": 5, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-echo-key", KEY)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(monkeypatch):
    for names in KEY_ENV_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Dishonest)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_openai_billed_above_max_tokens_settles_on_the_bill_then_refuses(server, tmp_path):
    session = Session(budget_usd=0.01, cassette=tmp_path / "c.jsonl",
                      base_url={"openai": f"{server}/v1", "anthropic": server})
    with pytest.warns(UserWarning, match="over the \\$0.010000 budget: further calls are refused"):
        result = session.call("openai", "gpt-4o-mini", prompt="hi", max_tokens=10)
    billed = price_usage_exact("openai", "gpt-4o-mini", input_tokens=12, output_tokens=1_000_000)
    assert result.cost_usd == pytest.approx(billed) and billed == pytest.approx(0.6000018)   # $0.60 per M output
    assert session.spent_usd == pytest.approx(billed) and session.exhausted
    with pytest.raises(BudgetExceeded, match="budget is spent .*billed \\$0.600002.*no further calls"):
        session.call("openai", "gpt-4o-mini", prompt="hi", max_tokens=1)
    assert session.refused == 1 and session.calls == 1 and len(session.overruns) == 1


def test_a_claude_prompt_larger_than_its_estimate_is_billed_and_stops_the_session(server, tmp_path):
    session = Session(budget_usd=0.05, base_url={"anthropic": server})
    with pytest.warns(UserWarning, match="500,000 input"):
        result = session.call("anthropic", "claude-sonnet-4-6", prompt="short prompt", max_tokens=10)
    billed = price_usage_exact("anthropic", "claude-sonnet-4-6", input_tokens=500_000, output_tokens=5)
    assert result.cost_usd == pytest.approx(billed) and billed > 1.0           # $3 per M input
    with pytest.raises(BudgetExceeded, match="budget is spent"):
        session.call("anthropic", "claude-sonnet-4-6", prompt="again", max_tokens=10)


def test_keys_whole_masked_or_echoed_never_reach_the_cassette(server, tmp_path):
    cassette = tmp_path / "c.jsonl"
    session = Session(budget_usd=10.0, cassette=cassette, base_url={"openai": f"{server}/v1", "anthropic": server})
    with pytest.warns(UserWarning):
        session.call("openai", "gpt-4o-mini", prompt="hi", max_tokens=10)
    with pytest.warns(UserWarning):
        session.call("anthropic", "claude-sonnet-4-6", prompt="hi", max_tokens=10)
    text = cassette.read_text()
    assert KEY not in text and MASKED not in text and "sk-abc" not in text and "[redacted]" in text
    assert KEY[:12] not in text


@pytest.mark.parametrize("shape", [MASKED, "sk-abc...wxyz", "sk-proj-********************wxyz", KEY])
def test_scrub_removes_masked_key_shapes(shape):
    assert "wxyz" not in scrub(f"Incorrect API key provided: {shape}. See docs")
