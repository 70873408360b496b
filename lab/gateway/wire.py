"""The providers' wire formats as the gateway meets them: where the key is, what a request may cost,
how an error looks, where the usage sits in a streamed answer, and how a plain text chat is
translated from one provider's format to another's (for cross-provider fallback).

A learner's SDK is pointed at one prefix per provider (`/openai/v1`, `/anthropic`,
`/google`) and sends its gateway token where it would send its key; the gateway answers
refusals in the provider's own error shape, so the SDK raises its usual exception. OpenAI
has two endpoints under its prefix, chat completions and the Responses API, each its own Wire.
"""

from __future__ import annotations

import json
import math
import re
import time

from lab.errors import ConfigError
from lab.live import ESTIMATE_MARGIN
from lab.pricing import model_prices
from lab.providers.sdk import Chat, Usage
from lab.tokens import count_messages, count_tokens, is_exact

#: the Messages API version a translated request asks for
ANTHROPIC_VERSION = "2023-06-01"
#: relative headroom on a worst case priced in floats
WORST_CASE_ROUNDING = 1e-9
#: worst cases by (provider, model, prompt tokens, max_tokens, cache-write TTL): counts repeat, prices are fixed
WORST_MEMO_SIZE = 50_000
_WORST_MEMO: dict[tuple, float] = {}
_GEMINI = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)$")


class BadRequest(Exception):
    """A request the gateway cannot price or route: answered 400 in the provider's shape."""


def _prompt_tokens(provider: str, model: str, messages, system=None) -> int:
    """The prompt's counted tokens; content the counter does not know is counted as its JSON text (an overcount)."""
    try:
        counted = count_messages(messages, model, provider, system=system)
    except (ConfigError, TypeError, AttributeError, ValueError, KeyError):
        counted = count_tokens(json.dumps([system, messages], default=str), model)
    return counted if is_exact(model) else math.ceil(counted * ESTIMATE_MARGIN)


def _plain_text(content) -> str | None:
    """A message's content as text: a string, or a list of text parts (prompt-cache marks dropped); else None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in ("text", "input_text")
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None


def _positive_int(value, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"{name}: expected a positive integer")
    return value


class Wire:
    """One provider's format; subclasses fill in the details."""

    provider: str
    prefix: str
    #: headers a translated request to this provider needs (the caller's own request brings its own)
    chat_headers: dict = {}

    def match(self, path: str) -> Wire | None:
        """The wire serving this path under the prefix (None: not a chat endpoint); the upstream path is the same."""
        raise NotImplementedError

    def token(self, headers, query: dict) -> str | None:
        raise NotImplementedError

    def model(self, body: dict, path: str) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: field required")
        return model

    def stream(self, body: dict, path: str) -> bool:
        return body.get("stream") is True

    def set_model(self, body: dict, path: str, model: str) -> str:
        """Ask for `model` instead (the router's choice); the upstream path that now names it."""
        body["model"] = model
        return path

    def max_tokens(self, body: dict) -> int | None:
        raise NotImplementedError

    def set_max_tokens(self, body: dict, n: int) -> None:
        raise NotImplementedError

    def prompt_tokens(self, body: dict, model: str) -> int:
        raise NotImplementedError

    def cache_write(self, body: dict) -> str | None:
        """The TTL ("5m" / "1h") a request writes to the provider's prompt cache, if it asks to."""
        return None

    def worst_case_usd(self, body: dict, model: str) -> float:
        """The most this request can be billed: its prompt as uncached input (or cache writes) plus max_tokens out."""
        prices = model_prices(self.provider, model)   # an unknown model is refused with close names
        prompt = self.prompt_tokens(body, model)
        ttl = self.cache_write(body)
        key = (self.provider, model, prompt, self.max_tokens(body), ttl)
        cost = _WORST_MEMO.get(key)
        if cost is None:
            written = prompt if ttl else 0
            # genai-prices' own numbers in float arithmetic (a tenth of its Decimal calc's time), nudged up
            # so float rounding can never put the hold below the Decimal-priced bill
            cost = float(prices.cost_usd(prompt, key[3], 0, written, write_1h=ttl == "1h")) * (1 + WORST_CASE_ROUNDING)
            if len(_WORST_MEMO) >= WORST_MEMO_SIZE:
                _WORST_MEMO.clear()
            _WORST_MEMO[key] = cost
        return cost

    def prepare_stream(self, body: dict) -> None:
        """Ask the upstream for the usage in a stream, where it must be asked for."""

    def upstream_headers(self, key: str) -> dict:
        raise NotImplementedError

    def error(self, status: int, message: str) -> dict:
        raise NotImplementedError

    def stream_usage(self, events: list[dict], model: str) -> dict | None:
        """A response-shaped dict holding a stream's usage (for genai-prices), from its events."""
        raise NotImplementedError

    def text(self, response: dict) -> str:
        raise NotImplementedError

    # -- translation, for cross-provider fallback (text only; a stream is asked of the fallback whole) ----

    def chat(self, body: dict) -> tuple[Chat, float | None] | None:
        """The request (streamed or not) as a plain text chat and its temperature; None when it holds anything else."""
        return None

    def chat_request(self, model: str, chat: Chat, max_tokens: int, temperature: float | None) -> tuple[str, dict]:
        """(upstream path, body) asking this provider's `model` for `chat`."""
        raise NotImplementedError

    def truncated(self, response: dict) -> bool:
        """True when the answer stopped at max_tokens."""
        raise NotImplementedError

    def chat_answer(self, model: str, text: str, truncated: bool, usage: Usage, answer_id: str) -> dict:
        """A text answer in this provider's response shape, with `usage` (another provider's) in its usage block."""
        raise NotImplementedError


class OpenAIWire(Wire):
    """Chat completions."""

    provider, prefix = "openai", "/openai/v1"
    CHAT_KEYS = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "stream",
                           "stream_options"})

    def match(self, path):
        return {"/chat/completions": self, "/responses": RESPONSES}.get(path)

    def token(self, headers, query):
        auth = headers.get("authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def max_tokens(self, body):
        return _positive_int(body.get("max_completion_tokens"), "max_completion_tokens") or _positive_int(
            body.get("max_tokens"), "max_tokens")

    def set_max_tokens(self, body, n):
        body.pop("max_tokens", None)
        body["max_completion_tokens"] = n

    def prompt_tokens(self, body, model):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: expected a non-empty list")
        return _prompt_tokens("openai", model, messages)

    def prepare_stream(self, body):
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        body["stream_options"] = {**options, "include_usage": True}

    def upstream_headers(self, key):
        return {"authorization": f"Bearer {key}"}

    def error(self, status, message):
        kind = {400: "invalid_request_error", 401: "invalid_request_error", 402: "insufficient_quota",
                429: "rate_limit_exceeded"}.get(status, "server_error")
        code = {401: "invalid_api_key", 402: "insufficient_quota", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def stream_usage(self, events, model):
        usage = next((e["usage"] for e in reversed(events) if isinstance(e.get("usage"), dict)), None)
        return None if usage is None else {"model": next((e.get("model") for e in events if e.get("model")), model),
                                           "usage": usage, "object": "chat.completion"}

    def text(self, response):
        return ((response.get("choices") or [{}])[0].get("message") or {}).get("content") or ""

    def chat(self, body):
        if not set(body) <= self.CHAT_KEYS:
            return None
        messages = []
        for m in body.get("messages") or []:
            text = _plain_text(m.get("content")) if isinstance(m, dict) else None
            if text is None:
                return None
            role = "system" if m.get("role") == "developer" else m.get("role")
            messages.append({"role": role, "content": text})
        try:
            return Chat.of(messages), body.get("temperature")
        except ConfigError:
            return None

    def chat_request(self, model, chat, max_tokens, temperature):
        messages = ([{"role": "system", "content": chat.system}] if chat.system else []) + [
            {"role": role, "content": text} for role, text in chat.messages]
        body = {"model": model, "messages": messages, "max_completion_tokens": max_tokens}
        return "/chat/completions", body | ({} if temperature is None else {"temperature": temperature})

    def truncated(self, response):
        return (response.get("choices") or [{}])[0].get("finish_reason") == "length"

    def chat_answer(self, model, text, truncated, usage, answer_id):
        return {"id": f"chatcmpl-{answer_id}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "system_fingerprint": None, "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                                     "refusal": None},
                                             "logprobs": None, "finish_reason": "length" if truncated else "stop"}],
                "usage": {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                          "total_tokens": usage.input_tokens + usage.output_tokens,
                          "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
                          "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}}


class OpenAIResponsesWire(OpenAIWire):
    """The Responses API (`POST /responses`): `input` and `instructions`, `max_output_tokens`, typed stream events.

    Its usage (`input_tokens`, `input_tokens_details.cached_tokens`, `output_tokens`) comes in the
    answer, or in a stream's final `response.completed` (or `response.incomplete`) event, unasked.
    """

    def max_tokens(self, body):
        return _positive_int(body.get("max_output_tokens"), "max_output_tokens")

    def set_max_tokens(self, body, n):
        body["max_output_tokens"] = n

    def prompt_tokens(self, body, model):
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list) or not items:
            raise BadRequest("input: expected a string or a non-empty list of input items")
        # message items as chat messages (counted exactly); other items are counted as their JSON text
        messages = [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
        for item in items:
            text = _plain_text(item.get("content")) if isinstance(item, dict) and "role" in item else None
            messages.append({"role": item["role"], "content": text} if text is not None
                            else {"role": "user", "content": json.dumps(item, default=str)})
        return _prompt_tokens("openai", model, messages)

    def prepare_stream(self, body):
        pass   # the Responses API always ends a stream with the usage

    def stream_usage(self, events, model):
        done = next((e["response"] for e in reversed(events) if isinstance(e.get("response"), dict)
                     and isinstance(e["response"].get("usage"), dict)), None)
        return None if done is None else {**done, "model": done.get("model") or model, "object": "response"}

    def text(self, response):
        return "".join(part.get("text", "") for item in response.get("output") or [] if item.get("type") == "message"
                       for part in item.get("content") or [] if part.get("type") == "output_text")

    def chat(self, body):
        return None   # falls back within OpenAI only


RESPONSES = OpenAIResponsesWire()


class AnthropicWire(Wire):
    provider, prefix = "anthropic", "/anthropic"

    def match(self, path):
        return self if path == "/v1/messages" else None

    def token(self, headers, query):
        key = headers.get("x-api-key")
        if key:
            return key.strip()
        auth = headers.get("authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def max_tokens(self, body):
        return _positive_int(body.get("max_tokens"), "max_tokens")

    def set_max_tokens(self, body, n):
        body["max_tokens"] = n

    def prompt_tokens(self, body, model):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: expected a non-empty list")
        system = body.get("system")
        if isinstance(system, list):
            system = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in system)
        return _prompt_tokens("anthropic", model, messages, system)

    def cache_write(self, body):
        controls = []
        parts = [body.get("system")] + [m.get("content") for m in body.get("messages") or [] if isinstance(m, dict)]
        for part in parts:
            if isinstance(part, list):
                controls += [b["cache_control"] for b in part if isinstance(b, dict) and b.get("cache_control")]
        if not controls:
            return None
        return "1h" if any(isinstance(c, dict) and c.get("ttl") == "1h" for c in controls) else "5m"

    def upstream_headers(self, key):
        return {"x-api-key": key}

    def error(self, status, message):
        kind = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 429: "rate_limit_error",
                529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_usage(self, events, model):
        start = next((e for e in events if e.get("type") == "message_start"), None)
        if start is None:
            return None
        usage = dict(start.get("message", {}).get("usage") or {})
        for e in events:
            if e.get("type") == "message_delta" and isinstance(e.get("usage"), dict):
                usage.update({k: v for k, v in e["usage"].items() if v is not None})
        return {"type": "message", "model": start.get("message", {}).get("model") or model, "usage": usage}

    def text(self, response):
        return "".join(b.get("text", "") for b in response.get("content") or [] if b.get("type") == "text")

    CHAT_KEYS = frozenset({"model", "messages", "max_tokens", "system", "temperature", "stream"})
    MAX_TEMPERATURE = 1.0
    chat_headers = {"anthropic-version": ANTHROPIC_VERSION}

    def chat(self, body):
        if not set(body) <= self.CHAT_KEYS:
            return None
        system = _plain_text(body.get("system") or "")
        if system is None:
            return None
        messages = [{"role": "system", "content": system}] if system else []
        for m in body.get("messages") or []:
            text = _plain_text(m.get("content")) if isinstance(m, dict) else None
            if text is None or m.get("role") not in ("user", "assistant"):
                return None
            messages.append({"role": m["role"], "content": text})
        try:
            return Chat.of(messages), body.get("temperature")
        except ConfigError:
            return None

    def chat_request(self, model, chat, max_tokens, temperature):
        body = {"model": model, "max_tokens": max_tokens,
                "messages": [{"role": role, "content": text} for role, text in chat.messages]}
        if chat.system:
            body["system"] = chat.system
        if temperature is not None:   # Anthropic's range is 0 to 1, OpenAI's and Gemini's 0 to 2
            body["temperature"] = min(temperature, self.MAX_TEMPERATURE)
        return "/v1/messages", body

    def truncated(self, response):
        return response.get("stop_reason") == "max_tokens"

    def chat_answer(self, model, text, truncated, usage, answer_id):
        return {"id": f"msg_{answer_id}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if truncated else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens,
                          "cache_read_input_tokens": usage.cached_input_tokens,
                          "cache_creation_input_tokens": usage.cache_write_tokens,
                          "output_tokens": usage.output_tokens}}


class GeminiWire(Wire):
    provider, prefix = "google", "/google"

    def match(self, path):
        return self if _GEMINI.match(path) else None

    def token(self, headers, query):
        key = headers.get("x-goog-api-key") or query.get("key")
        return key.strip() if key else None

    def model(self, body, path):
        return _GEMINI.match(path).group(1)

    def stream(self, body, path):
        return _GEMINI.match(path).group(2) == "streamGenerateContent"

    def set_model(self, body, path, model):
        match = _GEMINI.match(path)
        return path[:match.start(1)] + model + path[match.end(1):]

    @staticmethod
    def _config(body) -> dict:
        config = body.get("generationConfig")
        if config is None:
            config = body.setdefault("generationConfig", {})
        if not isinstance(config, dict):
            raise BadRequest("generationConfig: expected an object")
        return config

    def max_tokens(self, body):
        return _positive_int(self._config(body).get("maxOutputTokens"), "generationConfig.maxOutputTokens")

    def set_max_tokens(self, body, n):
        self._config(body)["maxOutputTokens"] = n

    def prompt_tokens(self, body, model):
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("contents: expected a non-empty list")
        system = body.get("systemInstruction")
        system_text = None
        if isinstance(system, dict):
            system_text = "".join(p.get("text", "") for p in system.get("parts") or [] if isinstance(p, dict))
        return _prompt_tokens("google", model, contents, system_text)

    def upstream_headers(self, key):
        return {"x-goog-api-key": key}

    def error(self, status, message):
        state = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
        return {"error": {"code": status, "message": message, "status": state}}

    def stream_usage(self, events, model):
        last = next((e for e in reversed(events) if isinstance(e.get("usageMetadata"), dict)), None)
        return None if last is None else {"usageMetadata": last["usageMetadata"],
                                          "modelVersion": last.get("modelVersion") or model}

    def text(self, response):
        parts = (((response.get("candidates") or [{}])[0]).get("content") or {}).get("parts") or []
        return "".join(p.get("text", "") for p in parts if not p.get("thought"))

    CHAT_KEYS = frozenset({"contents", "systemInstruction", "generationConfig"})
    CONFIG_KEYS = frozenset({"maxOutputTokens", "temperature"})

    @staticmethod
    def _parts_text(content) -> str | None:
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not all(isinstance(p, dict) and set(p) == {"text"} for p in parts):
            return None
        return "".join(str(p["text"]) for p in parts)

    def chat(self, body):
        config = body.get("generationConfig") or {}
        if not set(body) <= self.CHAT_KEYS or not isinstance(config, dict) or not set(config) <= self.CONFIG_KEYS:
            return None
        system = self._parts_text(body["systemInstruction"]) if body.get("systemInstruction") else ""
        if system is None:
            return None
        messages = [{"role": "system", "content": system}] if system else []
        for c in body.get("contents") or []:
            text = self._parts_text(c)
            if text is None or (c.get("role") or "user") not in ("user", "model"):
                return None
            messages.append({"role": "assistant" if c.get("role") == "model" else "user", "content": text})
        try:
            return Chat.of(messages), config.get("temperature")
        except ConfigError:
            return None

    def chat_request(self, model, chat, max_tokens, temperature):
        config = {"maxOutputTokens": max_tokens} | ({} if temperature is None else {"temperature": temperature})
        body = {"contents": [{"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
                             for role, text in chat.messages], "generationConfig": config}
        if chat.system:
            body["systemInstruction"] = {"parts": [{"text": chat.system}]}
        return f"/v1beta/models/{model}:generateContent", body

    def truncated(self, response):
        return ((response.get("candidates") or [{}])[0]).get("finishReason") == "MAX_TOKENS"

    def chat_answer(self, model, text, truncated, usage, answer_id):
        meta = {"promptTokenCount": usage.input_tokens, "candidatesTokenCount": usage.output_tokens,
                "totalTokenCount": usage.input_tokens + usage.output_tokens}
        if usage.cached_input_tokens:
            meta["cachedContentTokenCount"] = usage.cached_input_tokens
        return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                                "finishReason": "MAX_TOKENS" if truncated else "STOP", "index": 0}],
                "usageMetadata": meta, "modelVersion": model, "responseId": answer_id}


WIRES = {w.provider: w for w in (OpenAIWire(), AnthropicWire(), GeminiWire())}


def sse_events(data: bytes) -> list[dict]:
    """The JSON objects of a server-sent event stream's `data:` lines (`[DONE]` and non-JSON skipped)."""
    events = []
    for line in data.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload and payload != b"[DONE]":
                try:
                    event = json.loads(payload)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
    return events
