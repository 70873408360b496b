"""The three providers' wire formats as the gateway meets them: where the key is, what a request may cost,
how an error looks, and where the usage sits in a streamed answer.

A learner's SDK is pointed at one prefix per provider (`/openai/v1`, `/anthropic`,
`/google`) and sends its gateway token where it would send its key; the gateway answers
refusals in the provider's own error shape, so the SDK raises its usual exception.
"""

from __future__ import annotations

import json
import math
import re

from lab.errors import ConfigError
from lab.live import ESTIMATE_MARGIN
from lab.pricing import model_prices
from lab.tokens import count_messages, count_tokens, is_exact

#: relative headroom on a worst case priced in floats
WORST_CASE_ROUNDING = 1e-9
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

    def match(self, path: str) -> str | None:
        """The upstream path for a gateway path under this prefix (None: not a chat endpoint)."""
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
        written = prompt if ttl else 0
        # genai-prices' own numbers in float arithmetic (a tenth of its Decimal calc's time), nudged up
        # so float rounding can never put the hold below the Decimal-priced bill
        cost = float(prices.cost_usd(prompt, self.max_tokens(body), 0, written, write_1h=ttl == "1h"))
        return cost * (1 + WORST_CASE_ROUNDING)

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


class OpenAIWire(Wire):
    provider, prefix = "openai", "/openai/v1"

    def match(self, path):
        return path if path == "/chat/completions" else None

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


class AnthropicWire(Wire):
    provider, prefix = "anthropic", "/anthropic"

    def match(self, path):
        return path if path == "/v1/messages" else None

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


class GeminiWire(Wire):
    provider, prefix = "google", "/google"

    def match(self, path):
        return path if _GEMINI.match(path) else None

    def token(self, headers, query):
        key = headers.get("x-goog-api-key") or query.get("key")
        return key.strip() if key else None

    def model(self, body, path):
        return _GEMINI.match(path).group(1)

    def stream(self, body, path):
        return _GEMINI.match(path).group(2) == "streamGenerateContent"

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
        return "".join(p.get("text", "") for p in parts)


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
