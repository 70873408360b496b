"""A local fake of the OpenAI, Anthropic and Gemini HTTP APIs, for tests and offline lessons.

`FakeProviderServer` is a stdlib `ThreadingHTTPServer` on 127.0.0.1 that answers
`POST /v1/chat/completions` and `POST /v1/responses` (OpenAI), `POST /v1/messages` (Anthropic) and
`POST /v1beta/models/{model}:generateContent` (Gemini) in the providers' own JSON shapes,
so the official SDKs run unchanged against it. What it returns is deterministic:

- usage is counted with `lab.tokens` (input from the messages, output from a reply text
  derived from the prompt, cut at `max_tokens`);
- provider prompt caching follows the rule book (`lab.provider_rules`), the same rules the
  simulation's prompt_cache stage uses, so a repeated long prompt shows the usage the rules
  predict: OpenAI caches prefixes from the model's minimum in its increments (128 tokens;
  `prompt_tokens_details.cached_tokens`), and on write-billing models (GPT-5.6 and later) the
  exact prefix up to the implicit breakpoint (the end of the prompt) or a message marked
  `"prompt_cache_breakpoint": true`, reporting `cache_write_tokens`; Anthropic caches the exact
  prefix up to each `cache_control` breakpoint (at most 4) that reaches the model's minimum,
  reporting reads, writes and the 5-minute/1-hour split; Gemini caches implicitly from the
  model's minimum in 128-token blocks (`cachedContentTokenCount`), and reports
  `thoughtsTokenCount` when a thinking budget is set;
- errors are scripted, never random: `fail_next(n, status=429, retry_after_s=...)`, the
  admin endpoint `POST /_fake/fail`, or a per-request header `x-costlab-fake-fail: 429`.

API keys are required (as the real APIs require them) but never stored, logged or echoed.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from lab.errors import ConfigError
from lab.provider_rules import CacheRules, cache_rules
from lab.providers.sse import stream_body
from lab.tokens import count_messages, count_tokens, deterministic_text, get_encoding

HOST = "127.0.0.1"
PROVIDERS = ("openai", "anthropic", "google")
#: status a scripted "overloaded" failure uses per provider (OpenAI has none of its own)
OVERLOADED_STATUS = {"openai": 503, "anthropic": 529, "google": 503}
FAIL_HEADER = "x-costlab-fake-fail"
#: natural reply lengths (tokens) before `max_tokens` cuts them
REPLY_MIN_TOKENS, REPLY_SPREAD_TOKENS = 40, 160
CALL_LOG_SIZE = 1000

_GEMINI_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)$")
#: words of a reply per streamed text event

def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big")


def reply_text(model: str, prompt_text: str) -> str:
    """The deterministic, uncut reply to a prompt: 40 to 199 tokens, fixed by model and prompt."""
    n = REPLY_MIN_TOKENS + _stable_int(model, prompt_text) % REPLY_SPREAD_TOKENS
    return deterministic_text(f"reply\x00{model}\x00{prompt_text}", n)


def cut_to_tokens(text: str, n_tokens: int, model: str) -> tuple[str, int]:
    """A reply cut to at most `n_tokens` of `model`'s tokens, at a word, and its token count (tiktoken's,
    as billed): as a real API never bills more output than max_tokens. Its words are mostly one token
    each, so the cut is by words, then a word less while the count is over."""
    words = text.split(" ")[:max(n_tokens, 0)]
    while True:
        cut = " ".join(words)
        count = count_tokens(cut, model)
        if count <= n_tokens or not words:
            return cut, count
        words.pop()


# --------------------------------------------------------------------------- scripted errors


@dataclass(frozen=True)
class Failure:
    """One scripted error answer: HTTP `status`, with a `retry-after` header when set."""

    status: int
    retry_after_s: float | None = None
    provider: str | None = None      # None: whichever provider is called next


class FailureScript:
    """Errors queued for the next calls, consumed in order (thread-safe)."""

    def __init__(self):
        self._queue: deque[Failure] = deque()
        self._lock = threading.Lock()

    def fail_next(self, n: int = 1, status: int = 429, retry_after_s: float | None = None,
                  provider: str | None = None) -> None:
        """Answer the next `n` calls (to `provider`, or any) with `status`."""
        with self._lock:
            self._queue.extend(Failure(int(status), retry_after_s, provider) for _ in range(int(n)))

    def take(self, provider: str) -> Failure | None:
        """The failure scripted for this call to `provider`, if any (removed from the queue)."""
        with self._lock:
            for k, failure in enumerate(self._queue):
                if failure.provider in (None, provider):
                    del self._queue[k]
                    return failure
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)


def parse_fail_header(value: str) -> Failure:
    """`"429"` or `"429; retry-after=0.5"` → a Failure (the header form of the script)."""
    head, *params = [p.strip() for p in value.split(";")]
    retry_after = None
    for p in params:
        name, _, v = p.partition("=")
        if name.strip().lower() == "retry-after":
            retry_after = float(v)
    return Failure(int(head), retry_after)


# --------------------------------------------------------------------------- prompt caching


class PrefixCache:
    """Prompt prefixes a provider has seen, by hash, each forgotten `ttl_s` after its last use."""

    def __init__(self, max_entries: int = 100_000):
        self._expiry_s: dict[str, float] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def seen(self, key: str, now_s: float) -> bool:
        with self._lock:
            expiry = self._expiry_s.get(key)
            return expiry is not None and expiry > now_s

    def store(self, key: str, now_s: float, ttl_s: float) -> None:
        """Remember (or refresh) `key` until `now_s + ttl_s`."""
        with self._lock:
            if len(self._expiry_s) >= self.max_entries and key not in self._expiry_s:
                self._expiry_s.pop(next(iter(self._expiry_s)))
            self._expiry_s[key] = max(self._expiry_s.get(key, 0.0), now_s + ttl_s)

    def clear(self) -> None:
        with self._lock:
            self._expiry_s.clear()


def _block_keys(namespace: str, text: str, block_tokens: int) -> list[str]:
    """Chained hashes of the prompt's full blocks of `block_tokens`: key k names blocks 0..k."""
    tokens = get_encoding("o200k_base").encode_ordinary(text)
    keys, chain = [], hashlib.sha256(namespace.encode())
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        chain.update(repr(tokens[start:start + block_tokens]).encode())
        keys.append(chain.copy().hexdigest())
    return keys


def implicit_cached_tokens(cache: PrefixCache, namespace: str, text: str, rules: CacheRules,
                           now_s: float) -> int:
    """Automatic prefix caching (OpenAI before GPT-5.6, Gemini implicit): leading blocks seen before.

    Blocks are the model's increment (128 tokens; 2,048 on GPT-5.5), and nothing counts below
    its minimum. Every block of the prompt is then remembered, so the same long prompt sent
    twice is cached the second time.
    """
    if not rules.supports_caching:
        return 0
    step = rules.increment_tokens or 1
    keys = _block_keys(namespace, text, step)
    hit_blocks = 0
    for key in keys:
        if not cache.seen(key, now_s):
            break
        hit_blocks += 1
    ttl_s = rules.ttl_for()
    for key in keys:
        cache.store(key, now_s, ttl_s)
    cached = hit_blocks * step
    return cached if cached >= rules.min_cacheable_tokens else 0


def breakpoint_cache(cache: PrefixCache, rules: CacheRules, breakpoints, now_s: float) -> tuple[int, dict]:
    """Exact-prefix caching at breakpoints (Anthropic, OpenAI GPT-5.6+): tokens read, and written per TTL.

    `breakpoints` are (prefix tokens, hash of the prefix, retention option), shortest first. The
    longest fresh one is read; only the tokens beyond it are written, once per breakpoint that
    reaches the model's minimum; a breakpoint below it caches nothing.
    """
    if len(breakpoints) > rules.max_breakpoints:
        raise WireError(400, f"A maximum of {rules.max_breakpoints} blocks with cache_control may be provided. "
                             f"Found {len(breakpoints)}.")
    eligible = [b for b in breakpoints if b[0] >= rules.min_cacheable_tokens] if rules.supports_caching else []
    read = max((tokens for tokens, key, _ in eligible if cache.seen(key, now_s)), default=0)
    written, covered = dict.fromkeys(rules.ttl_s, 0), read
    for tokens, key, ttl in eligible:
        if tokens > covered:
            written[ttl] += tokens - covered
            covered = tokens
        cache.store(key, now_s, rules.ttl_for(ttl))
    return read, written


# --------------------------------------------------------------------------- wire formats


class WireError(Exception):
    """A request the fake provider refuses, answered as an HTTP error in the provider's shape."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s


def _text(value) -> str:
    """Text of a string or a list of text parts/blocks."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in value)
    raise WireError(400, f"expected a string or a list of text parts, got {type(value).__name__}")


def _required_int(body: dict, *names: str, default: int | None = None) -> int | None:
    for name in names:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WireError(400, f"{name}: expected a positive integer")
            return value
    if default is None:
        raise WireError(400, f"{names[0]}: field required")
    return default


class OpenAIWire:
    """`POST /v1/chat/completions`, with automatic prefix caching."""

    provider = "openai"

    def answer(self, server: FakeProviderServer, body: dict, model: str) -> tuple[dict, int]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError(400, "messages: expected a non-empty list")
        model = body.get("model") or ""
        if not model:
            raise WireError(400, "model: field required")
        max_tokens = _required_int(body, "max_completion_tokens", "max_tokens", default=4096)
        plain = [{k: v for k, v in m.items() if k in ("role", "content", "name")} for m in messages]
        prompt_tokens = count_messages(plain, model, "openai")
        prompt_text = "\n".join(f"{m.get('role')}:{_text(m.get('content'))}" for m in plain)
        rules = cache_rules("openai", model)
        written = 0
        if rules.write_charged:
            cached, writes = breakpoint_cache(server.caches["openai"], rules,
                                              self._breakpoints(model, plain, messages, prompt_tokens, rules),
                                              time.monotonic())
            written = sum(writes.values())
        else:
            cached = implicit_cached_tokens(server.caches["openai"], f"openai\x00{model}", prompt_text,
                                            rules, time.monotonic())
        cached = min(cached, prompt_tokens)
        full = reply_text(model, prompt_text)
        text, out = cut_to_tokens(full, max_tokens, model)
        response = {
            "id": f"chatcmpl-fake{_stable_int(prompt_text, str(server.calls_total())) % 10**12}",
            "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": "length" if text != full else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out,
                      "total_tokens": prompt_tokens + out,
                      "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0,
                                                **({"cache_write_tokens": written} if rules.write_charged else {})},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_costlab_fake",
        }
        return response, out

    @staticmethod
    def _breakpoints(model: str, plain: list, messages: list, prompt_tokens: int, rules: CacheRules) -> list:
        """GPT-5.6+: explicit breakpoints (messages marked `prompt_cache_breakpoint`), then the implicit one.

        An explicit breakpoint covers the messages up to and including the marked one; the
        implicit one, at the end of the latest message, the whole prompt.
        """
        out = []
        for k, message in enumerate(messages[:-1]):
            if isinstance(message, dict) and message.get("prompt_cache_breakpoint"):
                head = plain[:k + 1]
                text = "\n".join(f"{m.get('role')}:{_text(m.get('content'))}" for m in head)
                out.append((count_messages(head, model, "openai"),
                            hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest(), rules.default_ttl))
        text = "\n".join(f"{m.get('role')}:{_text(m.get('content'))}" for m in plain)
        out.append((prompt_tokens, hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest(), rules.default_ttl))
        return out

    @staticmethod
    def error_body(status: int, message: str) -> dict:
        kind = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": kind.get(status, "server_error"), "param": None,
                          "code": code}}


class OpenAIResponsesWire(OpenAIWire):
    """`POST /v1/responses`: the chat answer (same counting, caching and reply), in the Responses API's shape."""

    def answer(self, server: FakeProviderServer, body: dict, model: str) -> tuple[dict, int]:
        chat = {"model": body.get("model"), "messages": self.messages(body),
                "max_completion_tokens": _required_int(body, "max_output_tokens", default=4096)}
        completion, out = super().answer(server, chat, model)
        choice, usage = completion["choices"][0], completion["usage"]
        details = {k: v for k, v in usage["prompt_tokens_details"].items() if k != "audio_tokens"}
        cut = choice["finish_reason"] == "length"
        key = completion["id"].removeprefix("chatcmpl-fake")
        message = {"id": f"msg_fake{key}", "type": "message", "status": "incomplete" if cut else "completed",
                   "role": "assistant", "content": [{"type": "output_text", "text": choice["message"]["content"],
                                                     "annotations": [], "logprobs": []}]}
        response = {
            "id": f"resp_fake{key}", "object": "response", "created_at": completion["created"],
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None, "error": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": completion["model"], "output": [message], "parallel_tool_calls": True,
            "temperature": body.get("temperature", 1.0), "tool_choice": "auto", "tools": [],
            "top_p": body.get("top_p", 1.0), "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": {"input_tokens": usage["prompt_tokens"], "input_tokens_details": details,
                      "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": usage["total_tokens"]},
        }
        return response, out

    @staticmethod
    def messages(body: dict) -> list[dict]:
        """`instructions` and `input` (a string, or message items of text parts) as chat messages."""
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list) or not items:
            raise WireError(400, "input: expected a string or a non-empty list of input items")
        messages = [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
        for k, item in enumerate(items):
            if not isinstance(item, dict) or item.get("type", "message") != "message" or "role" not in item:
                raise WireError(400, f"input[{k}]: the fake server takes message items only")
            messages.append({**{key: v for key, v in item.items() if key != "type"},
                             "content": _text(item.get("content"))})
        return messages


class AnthropicWire:
    """`POST /v1/messages`, with `cache_control` breakpoints (5-minute or 1-hour)."""

    provider = "anthropic"

    def answer(self, server: FakeProviderServer, body: dict, model: str) -> tuple[dict, int]:
        model = body.get("model") or ""
        if not model:
            raise WireError(400, "model: field required")
        max_tokens = _required_int(body, "max_tokens")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError(400, "messages: expected a non-empty list")
        # blocks in the order the cache sees them: system first, then each message
        blocks = []
        if body.get("system"):
            blocks.append(("system", body["system"]))
        blocks.extend((m.get("role", "user"), m.get("content")) for m in messages)
        encoding = get_encoding("o200k_base")
        prefix_tokens, prefix_text, breakpoints = 0, "", []
        for role, content in blocks:
            text = _text(content)
            prefix_tokens += len(encoding.encode_ordinary(text)) + 3
            prefix_text += f"{role}:{text}\n"
            ttl = self._cache_ttl(content)
            if ttl is not None:
                breakpoints.append((prefix_tokens, hashlib.sha256(f"{model}\x00{prefix_text}".encode()).hexdigest(), ttl))
        total_tokens = prefix_tokens + 1
        read, written = breakpoint_cache(server.caches["anthropic"], cache_rules("anthropic", model),
                                         breakpoints, time.monotonic())
        created = written["5m"] + written["1h"]
        prompt_text = prefix_text
        full = reply_text(model, prompt_text)
        text, out = cut_to_tokens(full, max_tokens, model)
        response = {
            "id": f"msg_fake{_stable_int(prompt_text, str(server.calls_total())) % 10**12}",
            "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if text != full else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": total_tokens - read - created,
                      "cache_creation_input_tokens": created, "cache_read_input_tokens": read,
                      "cache_creation": {"ephemeral_5m_input_tokens": written["5m"],
                                         "ephemeral_1h_input_tokens": written["1h"]},
                      "output_tokens": out, "service_tier": "standard"},
        }
        return response, out

    @staticmethod
    def _cache_ttl(content) -> str | None:
        """The TTL of the last `cache_control` in a system prompt or message content, if any."""
        ttl = None
        if isinstance(content, list):
            for block in content:
                control = block.get("cache_control") if isinstance(block, dict) else None
                if control:
                    ttl = control.get("ttl", "5m")
                    if ttl not in ("5m", "1h"):
                        raise WireError(400, f"cache_control.ttl: expected '5m' or '1h', got {ttl!r}")
        return ttl

    @staticmethod
    def error_body(status: int, message: str) -> dict:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


class GeminiWire:
    """`POST /v1beta/models/{model}:generateContent`, with implicit caching and thinking tokens."""

    provider = "google"

    def answer(self, server: FakeProviderServer, body: dict, model: str) -> tuple[dict, int]:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise WireError(400, "contents: expected a non-empty list")
        config = body.get("generationConfig") or body.get("generation_config") or {}
        max_tokens = _required_int(config, "maxOutputTokens", "max_output_tokens", default=8192)
        system = body.get("systemInstruction") or body.get("system_instruction")
        system_text = _text(system.get("parts")) if isinstance(system, dict) else None
        plain = [{"role": c.get("role", "user"), "parts": [{"text": _text(c.get("parts"))}]} for c in contents]
        prompt_tokens = count_messages(plain, model, "google", system=system_text)
        prompt_text = (f"system:{system_text}\n" if system_text else "") + "\n".join(
            f"{c['role']}:{c['parts'][0]['text']}" for c in plain)
        cached = min(implicit_cached_tokens(server.caches["google"], f"google\x00{model}", prompt_text,
                                            cache_rules("google", model), time.monotonic()), prompt_tokens)
        # proto JSON: the real API accepts lowerCamel and snake_case names alike
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        budget = thinking.get("thinkingBudget", thinking.get("thinking_budget")) or 0
        # thinking counts against maxOutputTokens, as on the real API
        thoughts = min(int(budget), REPLY_MIN_TOKENS + _stable_int("thoughts", model, prompt_text) % 200,
                       max_tokens - 1) if budget and budget > 0 else 0
        full = reply_text(model, prompt_text)
        text, out = cut_to_tokens(full, max_tokens - thoughts, model)
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": out,
                 "totalTokenCount": prompt_tokens + out + thoughts,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}
        if cached:
            usage["cachedContentTokenCount"] = cached
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        response = {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "MAX_TOKENS" if text != full else "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model,
            "responseId": f"fake{_stable_int(prompt_text, str(server.calls_total())) % 10**12}",
        }
        return response, out + thoughts

    @staticmethod
    def error_body(status: int, message: str) -> dict:
        state = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
        return {"error": {"code": status, "message": message, "status": state}}


WIRES = {"openai": OpenAIWire(), "anthropic": AnthropicWire(), "google": GeminiWire()}
RESPONSES_WIRE = OpenAIResponsesWire()


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    """Routes a request to its provider's wire format; never logs headers (they carry keys)."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60
    disable_nagle_algorithm = True   # TCP_NODELAY: no 40 ms delayed-ACK stall between responses

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass  # the request line of some SDKs carries a key in the query string: log nothing

    def _send_json(self, status: int, obj: dict, retry_after_s: float | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", retry_after_s)

    def _send(self, status: int, data: bytes, content_type: str, retry_after_s: float | None = None) -> None:
        """Headers and body in one write (two small writes stall ~40 ms on delayed ACKs)."""
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        if retry_after_s is not None:
            self.send_header("retry-after", f"{retry_after_s:g}")
        self._headers_buffer.extend((b"\r\n", data))
        self.flush_headers()

    def _read_json(self) -> dict:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise WireError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise WireError(400, "the request body must be a JSON object")
        return body

    def do_GET(self):  # noqa: N802 - the stdlib's name
        fake = self.server.fake
        if urlsplit(self.path).path == "/_fake/stats":
            self._send_json(200, fake.stats())
        else:
            self._send_json(404, {"error": {"message": f"no such path {urlsplit(self.path).path}"}})

    def do_POST(self):  # noqa: N802 - the stdlib's name
        fake, path = self.server.fake, urlsplit(self.path).path
        if path.startswith("/_fake/"):
            self._admin(fake, path)
            return
        stream = None
        if path in ("/v1/chat/completions", "/v1/responses"):
            provider, model = "openai", None
        elif path == "/v1/messages":
            provider, model = "anthropic", None
        elif match := _GEMINI_PATH.match(path):
            provider, model = "google", match.group(1)
            stream = match.group(2) == "streamGenerateContent"
        else:
            self._send_json(404, {"error": {"message": f"the fake server has no endpoint {path}"}})
            return
        wire = RESPONSES_WIRE if path == "/v1/responses" else WIRES[provider]
        try:
            body = self._read_json()
            model = model or str(body.get("model") or "")
            self._check_key(provider)
            header = self.headers.get(FAIL_HEADER)
            failure = parse_fail_header(header) if header else fake.script.take(provider)
            if failure is not None:
                raise WireError(failure.status, f"scripted failure {failure.status} from the fake {provider} server",
                                failure.retry_after_s)
            response, output_tokens = wire.answer(fake, body, model)
        except WireError as exc:
            fake.record(provider, model or "", exc.status)
            self._send_json(exc.status, wire.error_body(exc.status, exc.message), exc.retry_after_s)
            return
        delay_s = (fake.latency_ms + fake.ms_per_output_token * output_tokens) / 1000.0
        if delay_s > 0:
            time.sleep(delay_s)
        fake.record(provider, model, 200, response)
        if stream or (stream is None and body.get("stream") is True):
            self._send(200, stream_body(provider, response, body), "text/event-stream")
        else:
            self._send_json(200, response)

    def _check_key(self, provider: str) -> None:
        """Refuse a call with no key, as the real APIs do (the key itself is never kept)."""
        h = self.headers
        present = {"openai": (h.get("authorization") or "").startswith("Bearer ") and len(h["authorization"]) > 7,
                   "anthropic": bool(h.get("x-api-key")) or bool(h.get("authorization")),
                   "google": bool(h.get("x-goog-api-key")) or "key=" in (urlsplit(self.path).query or "")}[provider]
        if not present:
            raise WireError(401, "no API key was sent")

    def _admin(self, fake: FakeProviderServer, path: str) -> None:
        try:
            body = self._read_json()
            if path == "/_fake/fail":
                fake.fail_next(int(body.get("count", 1)), int(body.get("status", 429)),
                               body.get("retry_after_s"), body.get("provider"))
            elif path == "/_fake/config":
                fake.configure(latency_ms=body.get("latency_ms"),
                               ms_per_output_token=body.get("ms_per_output_token"))
            elif path == "/_fake/reset":
                fake.reset()
            else:
                raise WireError(404, f"no admin endpoint {path}")
        except (WireError, ValueError, TypeError) as exc:
            self._send_json(getattr(exc, "status", 400), {"error": {"message": str(exc)}})
            return
        self._send_json(200, fake.stats())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128   # listen backlog: bursts of new connections are queued, not refused
    block_on_close = False   # keep-alive connections of SDK clients must not stall shutdown
    fake: FakeProviderServer


class FakeProviderServer:
    """The fake providers on 127.0.0.1, started and stopped as a context manager.

    >>> with FakeProviderServer(port=0) as server:
    ...     client = openai.OpenAI(api_key="x", base_url=server.base_url("openai"))
    """

    def __init__(self, port: int = 0, *, latency_ms: float = 0.0, ms_per_output_token: float = 0.0):
        self.requested_port = port
        self.latency_ms, self.ms_per_output_token = float(latency_ms), float(ms_per_output_token)
        self.script = FailureScript()
        self.caches = {p: PrefixCache() for p in PROVIDERS}
        #: the latest answered calls: provider, model, status and (on success) the JSON sent back
        self.calls: deque[dict] = deque(maxlen=CALL_LOG_SIZE)
        self._calls_lock = threading.Lock()
        self._calls_total = 0
        self._by_status: dict[str, int] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeProviderServer:
        if self._httpd is not None:
            return self
        try:
            self._httpd = _HTTPServer((HOST, self.requested_port), _Handler)
        except OSError as exc:
            raise ConfigError(f"fake server: cannot listen on {HOST}:{self.requested_port} ({exc.strerror})") from None
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="costlab-fake-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL to hand `provider`'s SDK (OpenAI's includes `/v1`)."""
        if provider not in PROVIDERS:
            raise ValueError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
        return f"{self.url}/v1" if provider == "openai" else self.url

    def base_urls(self) -> dict[str, str]:
        """`{provider: base URL}` for all three, as `lab.live.Session(base_url=...)` takes it."""
        return {p: self.base_url(p) for p in PROVIDERS}

    # -- behaviour ------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 429, retry_after_s: float | None = None,
                  provider: str | None = None) -> None:
        """Answer the next `n` calls with HTTP `status` (and `retry-after` when given)."""
        self.script.fail_next(n, status, retry_after_s, provider)

    def configure(self, *, latency_ms: float | None = None, ms_per_output_token: float | None = None) -> None:
        """Change the simulated latency: a fixed part plus a part per output token."""
        if latency_ms is not None:
            self.latency_ms = float(latency_ms)
        if ms_per_output_token is not None:
            self.ms_per_output_token = float(ms_per_output_token)

    def reset(self) -> None:
        """Forget cached prompts, scripted failures and the call log."""
        self.script.clear()
        for cache in self.caches.values():
            cache.clear()
        with self._calls_lock:
            self.calls.clear()
            self._calls_total = 0
            self._by_status.clear()

    def record(self, provider: str, model: str, status: int, response: dict | None = None) -> None:
        with self._calls_lock:
            self._calls_total += 1
            self._by_status[str(status)] = self._by_status.get(str(status), 0) + 1
            self.calls.append({"provider": provider, "model": model, "status": status, "response": response})

    def calls_total(self) -> int:
        return self._calls_total

    def stats(self) -> dict:
        with self._calls_lock:
            by_status = dict(self._by_status)
        return {"calls": self._calls_total, "by_status": by_status, "scripted_failures_left": len(self.script),
                "latency_ms": self.latency_ms, "ms_per_output_token": self.ms_per_output_token}
