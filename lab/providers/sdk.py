"""The official SDKs behind one small interface, and the simulation provider that calls through them.

An `Adapter` turns a chat request into the provider's own request body, sends it with
the official SDK (`openai` chat completions, `anthropic` messages, `google-genai`
generate_content), and reads back the text, the usage and the cost. Usage and cost come
from genai-prices' own mapping of the raw response (`extract_usage(...).calc_price()`),
so each provider's cache rules are applied as genai-prices states them: OpenAI's and
Gemini's prompt counts include cached tokens, Anthropic's `input_tokens` exclude cache
reads and writes (genai-prices adds them back).

Keys come only from the standard environment variables and are never written anywhere:
SDK error messages are scrubbed of them before they become a `ProviderError`.

`LiveProvider` has the interface of `lab.providers.mock.MockProvider` (the `Provider`
protocol in `lab.providers.base`), but serves each simulated request with a real call
through the spend-capped session the simulation hands it (a `lab.live.Session`) and uses
the measured latency as the service time.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
import time
import warnings
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
from genai_prices import extract_usage

from lab.errors import BudgetExceeded, ConfigError, CostlabError, PricingError
from lab.ledger import ERROR, OK, REJECTED
from lab.models import model_info
from lab.pricing import PRICE_DATE, model_prices
from lab.tokens import count_messages, deterministic_text

#: environment variables holding each provider's key, in the order they are read
KEY_ENV_VARS = {"openai": ("OPENAI_API_KEY",), "anthropic": ("ANTHROPIC_API_KEY",),
                "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
#: sent to a server on this machine (the fake server) when no key is set: it is no secret
LOOPBACK_PLACEHOLDER_KEY = "costlab-local-placeholder-key"
#: statuses worth retrying: rate limited, overloaded (Anthropic 529, Gemini 503) or a server fault
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
DEFAULT_TIMEOUT_S = 120.0
CACHE_TTLS = (None, "5m", "1h")

# Shapes of keys that must never leave this module, whatever the SDK put in a message.
_KEY_PATTERNS = (re.compile(r"sk-[A-Za-z0-9_\-]*(?:…|\.{3}|\*{3,})[A-Za-z0-9_\-]*"),   # masked: sk-abc…wxyz
                 re.compile(r"sk-[A-Za-z0-9_\-]{6,}"), re.compile(r"AIza[0-9A-Za-z_\-]{10,}"),
                 re.compile(r"(?i)(key=|api[_-]?key[\"']?\s*[:=]\s*[\"']?|bearer\s+)[^\s&\"',}]+"))
REDACTED = "[redacted]"


class ProviderError(CostlabError):
    """A provider refused a call or could not be reached; the message is scrubbed of keys."""

    def __init__(self, provider: str, message: str, status: int | None = None,
                 retry_after_s: float | None = None):
        self.provider, self.status, self.retry_after_s = provider, status, retry_after_s
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUS


def redact(text: str, secrets=()) -> str:
    """`text` with every secret, and anything shaped like a key (masked `sk-abc…wxyz` forms too), replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + REDACTED, text)
    return text


def scrub(text: str, secrets=()) -> str:
    """`text` on one line with every secret (and anything shaped like a key) replaced."""
    return " ".join(redact(text, secrets).split())


def is_loopback(base_url: str | None) -> bool:
    """True when `base_url` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    if not base_url:
        return False
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key(provider: str, base_url: str | None = None) -> str:
    """The provider's key from its environment variable; a ConfigError naming it when unset.

    A call to a server on this machine (the fake server) works without a key.
    """
    names = KEY_ENV_VARS[provider]
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    if is_loopback(base_url):
        return LOOPBACK_PLACEHOLDER_KEY
    raise ConfigError(f"{' or '.join(names)} is not set: export your {provider} API key in that "
                      f"environment variable to call {provider} live")


def known_secrets(*extra: str | None) -> tuple[str, ...]:
    """Every provider key set in the environment (plus `extra`), longest first, for scrubbing."""
    values = {os.environ.get(name, "").strip() for names in KEY_ENV_VARS.values() for name in names}
    values.update(x for x in extra if x)
    values.discard(LOOPBACK_PLACEHOLDER_KEY)
    return tuple(sorted((v for v in values if v), key=len, reverse=True))


@dataclass(frozen=True)
class Usage:
    """What a call consumed, as billed. `input_tokens` is the whole prompt, cache reads and writes included."""

    input_tokens: int
    cached_input_tokens: int = 0          # read from the provider's prompt cache
    cache_write_tokens: int = 0           # written to it (Anthropic), 5-minute and 1-hour together
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0                # reasoning / thinking tokens included
    reasoning_tokens: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def usage_and_cost(provider: str, response: dict, model: str) -> tuple[Usage, float]:
    """Billing usage and cost (USD) of a raw response, by genai-prices' extractor for `provider`.

    Prices are those in force at `lab.pricing.PRICE_DATE`, as in the simulation, so a live
    call and its simulated twin are priced alike. A response naming a model genai-prices
    does not know is priced as the requested `model`; if that fails too, a PricingError.
    An OpenAI Responses API answer (`"object": "response"`, usage as `input_tokens`,
    `input_tokens_details.cached_tokens`, `output_tokens`) is read by genai-prices' responses mapping.
    """
    if provider == "openai":
        flavor = "responses" if response.get("object") == "response" else "chat"
    else:
        flavor = "default"
    model_key = "modelVersion" if provider == "google" else "model"
    try:
        extracted = extract_usage(response, provider_id=provider, api_flavor=flavor)
    except LookupError:
        extracted = None
    if extracted is None or extracted.model is None:
        model_prices(provider, model)  # a PricingError with close names when genai-prices lacks it
        try:
            extracted = extract_usage({**response, model_key: model}, provider_id=provider, api_flavor=flavor)
        except (LookupError, ValueError) as exc:
            raise PricingError(f"genai-prices cannot price the {provider} response for {model!r}: {exc}") from None
    u = extracted.usage
    usage = Usage(input_tokens=int(u.input_tokens or 0), cached_input_tokens=int(u.cache_read_tokens or 0),
                  cache_write_tokens=int(u.cache_write_tokens or 0),
                  cache_write_1h_tokens=int(getattr(u, "cache_write_1h_tokens", 0) or 0),
                  output_tokens=int(u.output_tokens or 0),
                  reasoning_tokens=int(getattr(u, "output_reasoning_tokens", 0) or 0))
    cost = float(extracted.calc_price(genai_request_timestamp=PRICE_DATE).total_price)
    return usage, cost


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Chat:
    """A provider-neutral text chat: optional system prompt, then user/assistant turns."""

    messages: tuple[tuple[str, str], ...]     # (role, text), role "user" or "assistant"
    system: str | None = None

    @classmethod
    def of(cls, messages_or_prompt, system: str | None = None) -> Chat:
        """From a prompt string or OpenAI-style `[{role, content}]` (system messages allowed)."""
        if isinstance(messages_or_prompt, str):
            return cls((("user", messages_or_prompt),), system)
        if not isinstance(messages_or_prompt, (list, tuple)) or not messages_or_prompt:
            raise ConfigError("messages: expected a prompt string or a non-empty list of {role, content}")
        systems, turns = [] if system is None else [system], []
        for k, m in enumerate(messages_or_prompt):
            role = m.get("role") if isinstance(m, dict) else None
            content = m.get("content") if isinstance(m, dict) else None
            if role not in ("system", "user", "assistant") or not isinstance(content, str):
                raise ConfigError(f"messages[{k}]: expected {{role: system|user|assistant, content: text}}")
            (systems if role == "system" else turns).append(content if role == "system" else (role, content))
        if not turns:
            raise ConfigError("messages: expected at least one user message")
        return cls(tuple(turns), "\n".join(systems) if systems else None)


class Adapter:
    """One provider's SDK: builds the request body, sends it, reads text, usage and cost."""

    provider = ""

    def __init__(self, base_url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.base_url, self.timeout_s = base_url, timeout_s
        self._key: str | None = None     # read from the environment at the first send
        self._client = None

    def key(self) -> str:
        """The API key (a ConfigError naming its variable when unset); never printed."""
        if self._key is None:
            self._key = api_key(self.provider, self.base_url)
        return self._key

    def __repr__(self) -> str:  # the key stays out of every repr
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # what subclasses provide
    def request(self, model: str, chat: Chat, max_tokens: int, *, cache: str | None = None,
                thinking_budget_tokens: int | None = None) -> dict:
        """The JSON request body this provider's SDK is called with (also the cassette's key)."""
        raise NotImplementedError

    def input_tokens_estimate(self, body: dict) -> int:
        """Prompt tokens of `body` as lab.tokens counts them (exact for OpenAI, estimated otherwise)."""
        raise NotImplementedError

    def text(self, response: dict) -> str:
        raise NotImplementedError

    def client(self):
        """The SDK client, made once (reads the key)."""
        raise NotImplementedError

    def _send(self, body: dict) -> dict:
        raise NotImplementedError

    def _error(self, exc: Exception) -> tuple[int | None, dict, str]:
        """(status, response headers, message) of an SDK exception."""
        raise NotImplementedError

    # shared
    def send(self, body: dict) -> dict:
        """Send `body`; the raw response as JSON, or a scrubbed ProviderError."""
        self.key()  # a missing key is a ConfigError naming its variable, before anything is sent
        try:
            return self._send(body)
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a scrubbed ProviderError
            error = self._provider_error(exc)
        raise error  # raised outside the handler: the SDK exception (and its request) is not chained

    def _provider_error(self, exc: Exception) -> ProviderError:
        try:
            status, headers, message = self._error(exc)
        except Exception:  # noqa: BLE001 - not an HTTP error of this SDK
            status, headers, message = None, {}, f"{type(exc).__name__}: {exc}"
        retry_after_s = _retry_after_s(headers)
        where = f" at {self.base_url}" if self.base_url else ""
        head = f"{self.provider}{where} answered HTTP {status}" if status else f"{self.provider}{where} call failed"
        message = scrub(f"{head}: {message}", known_secrets(self._key))[:500]
        return ProviderError(self.provider, message, status, retry_after_s)

    def usage_and_cost(self, response: dict, model: str) -> tuple[Usage, float]:
        return usage_and_cost(self.provider, response, model)


def _sdk(module: str):
    """The SDK module `module`, or a ConfigError naming the `live` extra when it is not installed."""
    try:
        return importlib.import_module(module)  # an SDK: optional (`live` extra) and slow to import, so at first use
    except ImportError:
        raise ConfigError(f"{module} is not installed: live calls need the live extra "
                          "(pip install 'costlab[live]')") from None


def _retry_after_s(headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds; an HTTP date is ignored)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
        value = headers.get("retry-after")
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def _check_common(provider: str, cache, thinking_budget_tokens) -> None:
    if cache not in CACHE_TTLS:
        raise ConfigError(f"cache: expected None, '5m' or '1h', got {cache!r}")
    if cache is not None and provider != "anthropic":
        raise ConfigError(f"cache: explicit cache breakpoints are Anthropic's; {provider} caches prompts by itself")
    if thinking_budget_tokens is not None and provider != "google":
        raise ConfigError(f"thinking_budget_tokens: supported for google only, not {provider}")


class OpenAIAdapter(Adapter):
    """`openai` chat completions; prompt caching is automatic (prompts of 1,024 tokens and more)."""

    provider = "openai"

    def request(self, model, chat, max_tokens, *, cache=None, thinking_budget_tokens=None):
        _check_common(self.provider, cache, thinking_budget_tokens)
        messages = ([{"role": "system", "content": chat.system}] if chat.system else []) + [
            {"role": role, "content": text} for role, text in chat.messages]
        return {"model": model, "messages": messages, "max_completion_tokens": int(max_tokens)}

    def input_tokens_estimate(self, body):
        return count_messages(body["messages"], body["model"], "openai")

    def text(self, response):
        choices = response.get("choices") or [{}]
        return (choices[0].get("message") or {}).get("content") or ""

    def client(self):
        """The SDK client, made once (reads the key)."""
        if self._client is None:
            self._client = _sdk("openai").OpenAI(api_key=self.key(), base_url=self.base_url, max_retries=0,
                                         timeout=self.timeout_s)
        return self._client

    def _send(self, body):
        return self.client().chat.completions.create(**body).model_dump(mode="json", exclude_none=True)

    def _error(self, exc):
        openai = _sdk("openai")
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code, exc.response.headers, str(exc.message)
        if isinstance(exc, openai.APIConnectionError):
            return None, {}, f"{type(exc).__name__}: {exc}"
        raise TypeError


class AnthropicAdapter(Adapter):
    """`anthropic` messages; `cache="5m"|"1h"` sets cache breakpoints after the system prompt and at the end.

    The first lets prompts that share a system prompt reuse it; the second lets the same
    conversation, sent again or continued, reuse all of it.
    """

    provider = "anthropic"

    def request(self, model, chat, max_tokens, *, cache=None, thinking_budget_tokens=None):
        _check_common(self.provider, cache, thinking_budget_tokens)
        control = None if cache is None else {"type": "ephemeral", **({"ttl": "1h"} if cache == "1h" else {})}
        messages = [{"role": role, "content": text} for role, text in chat.messages]
        body = {"model": model, "max_tokens": int(max_tokens), "messages": messages}
        if chat.system is not None:
            body["system"] = chat.system if control is None else [
                {"type": "text", "text": chat.system, "cache_control": control}]
        if control is not None:
            last = messages[-1]
            last["content"] = [{"type": "text", "text": last["content"], "cache_control": dict(control)}]
        return body

    def input_tokens_estimate(self, body):
        return count_messages(body["messages"], body["model"], "anthropic", system=body.get("system"))

    def text(self, response):
        return "".join(b.get("text", "") for b in response.get("content") or [] if b.get("type") == "text")

    def client(self):
        """The SDK client, made once (reads the key)."""
        if self._client is None:
            self._client = _sdk("anthropic").Anthropic(api_key=self.key(), base_url=self.base_url, max_retries=0,
                                               timeout=self.timeout_s)
        return self._client

    def _send(self, body):
        with warnings.catch_warnings():  # the SDK warns about deprecated models on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            return self.client().messages.create(**body).model_dump(mode="json", exclude_none=True)

    def _error(self, exc):
        anthropic = _sdk("anthropic")
        if isinstance(exc, anthropic.APIStatusError):
            return exc.status_code, exc.response.headers, str(exc.message)
        if isinstance(exc, anthropic.APIConnectionError):
            return None, {}, f"{type(exc).__name__}: {exc}"
        raise TypeError


class GeminiAdapter(Adapter):
    """`google-genai` generate_content (Gemini API, not Vertex); implicit caching; thinking budget."""

    provider = "google"

    def request(self, model, chat, max_tokens, *, cache=None, thinking_budget_tokens=None):
        _check_common(self.provider, cache, thinking_budget_tokens)
        contents = [{"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
                    for role, text in chat.messages]
        config = {"max_output_tokens": int(max_tokens)}
        if chat.system is not None:
            config["system_instruction"] = chat.system
        if thinking_budget_tokens is not None:
            config["thinking_config"] = {"thinking_budget": int(thinking_budget_tokens)}
        return {"model": model, "contents": contents, "config": config}

    def input_tokens_estimate(self, body):
        return count_messages(body["contents"], body["model"], "google",
                              system=body["config"].get("system_instruction"))

    def text(self, response):
        candidates = response.get("candidates") or [{}]
        parts = (candidates[0].get("content") or {}).get("parts") or []
        return "".join(p.get("text", "") for p in parts if not p.get("thought"))

    def client(self):
        """The SDK client, made once (reads the key)."""
        if self._client is None:
            genai, types = _sdk("google.genai"), _sdk("google.genai.types")
            options = types.HttpOptions(base_url=self.base_url, timeout=int(self.timeout_s * 1000),
                                        retry_options=types.HttpRetryOptions(attempts=1))
            self._client = genai.Client(api_key=self.key(), vertexai=False, http_options=options)
        return self._client

    def _send(self, body):
        types = _sdk("google.genai.types")
        config = dict(body["config"])
        if "thinking_config" in config:
            config["thinking_config"] = types.ThinkingConfig(**config["thinking_config"])
        response = self.client().models.generate_content(
            model=body["model"], contents=body["contents"], config=types.GenerateContentConfig(**config))
        return response.model_dump(mode="json", by_alias=True, exclude_none=True,
                                   exclude={"sdk_http_response", "automatic_function_calling_history"})

    def _error(self, exc):
        errors = _sdk("google.genai.errors")
        if isinstance(exc, errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            return exc.code, headers, str(exc.message or exc.status or "")
        raise TypeError


ADAPTERS = {"openai": OpenAIAdapter, "anthropic": AnthropicAdapter, "google": GeminiAdapter}


def adapter_for(provider: str, base_url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Adapter:
    """The SDK adapter for `provider` ("openai", "anthropic" or "google")."""
    if provider not in ADAPTERS:
        raise ConfigError(f"provider: expected one of {', '.join(ADAPTERS)}, got {provider!r}")
    return ADAPTERS[provider](base_url, timeout_s)


# --------------------------------------------------------------------------- simulation


def synthesize_chat(requests, i: int, provider: str, model: str) -> Chat:
    """Request i of a simulated stream as a chat of its size: the same prompt key gives the same text.

    The system prompt (the stream's shared prefix, when it has one) and the user text are
    deterministic words, sized so the prompt counts `input_tokens[i]` tokens with the
    provider's chat overheads (exactly, for OpenAI models).
    """
    total = int(requests.input_tokens[i])
    prefix_id, prefix_tokens = int(requests.prefix_id[i]), int(requests.prefix_tokens[i])
    has_system = prefix_id >= 0 and prefix_tokens > 0
    system = deterministic_text(f"system\x00{prefix_id}", prefix_tokens) if has_system else None
    empty_system = "" if has_system else None
    if provider == "openai":
        skeleton = ([{"role": "system", "content": ""}] if has_system else []) + [{"role": "user", "content": ""}]
        overhead = count_messages(skeleton, model, "openai")
    elif provider == "anthropic":
        overhead = count_messages([{"role": "user", "content": ""}], model, "anthropic", system=empty_system)
    else:
        overhead = count_messages([{"role": "user", "parts": [{"text": ""}]}], model, "google", system=empty_system)
    user_tokens = max(total - (prefix_tokens if has_system else 0) - overhead, 1)
    return Chat((("user", deterministic_text(f"prompt\x00{int(requests.prompt[i])}", user_tokens)),), system)


class LiveProvider:
    """A scenario provider served by real calls (`kind = "live"`) or a cassette (`kind = "replay"`).

    Same interface as MockProvider. A request waits for one of `concurrency` slots; when it
    gets one, it is sent for real (text from `synthesize_chat`, `max_tokens` its output
    tokens) and holds the slot for the measured latency, retries included: that is its
    service time. The provider's own usage goes to the run (cached and cache-write tokens)
    and its billed cost to `measured_cost_usd`. A call the budget refuses is `rejected`; one
    that fails after retries is an `error`. Calls are made one at a time in wall-clock time.
    The session (its budget and cassette) comes from `sim.live_session(config)`: the
    simulation decides which runs share one.
    """

    def __init__(self, sim, config, index: int, rng=None):
        self.sim, self.env, self.config, self.index = sim, sim.env, config, index
        self.name, self.model = config.name, config.model
        self.info = model_info(config.name, config.model)
        self.session = sim.live_session(config)
        self.cache = getattr(config, "cache", None) if config.name == "anthropic" else None
        self.free_slots = max(int(getattr(config, "concurrency", 1) or 1), 1)
        self.waiting: deque[int] = deque()
        n = len(sim.requests)
        self.measured_cost_usd = np.zeros(n, dtype=np.float64)
        self.measured_input_tokens = np.zeros(n, dtype=np.int32)
        self.measured_output_tokens = np.zeros(n, dtype=np.int32)
        self.background_cost_usd = 0.0
        self.calls = self.refused = self.failed = 0

    # -- the story -------------------------------------------------------------------

    def submit(self, i: int) -> None:
        """Request i arrives at the provider: take a free slot or wait in line."""
        run = self.sim.run
        run.provider[i] = self.index
        run.t_dispatch_s[i] = self.env.now
        run.attempts[i] += 1
        run.provider_calls += 1
        self._take_slot(i)

    def submit_background(self, i: int) -> None:
        """A real fetch on behalf of request i that no one waits for (e.g. an early cache refresh)."""
        self.sim.run.provider_calls += 1
        self._take_slot(-1 - i)

    def _take_slot(self, i: int) -> None:
        if self.free_slots:
            self.free_slots -= 1
            self._serve(i)
        else:
            self.waiting.append(i)

    def _serve(self, i: int) -> None:
        """Send the call now (wall clock) and hold the slot for its measured latency (simulated clock)."""
        background, r = i < 0, (-1 - i if i < 0 else i)
        run = self.sim.run
        if not background:
            run.queue_ms[i] += (self.env.now - run.t_dispatch_s[i]) * 1000.0
            self.sim.on_start(i, self)
        outcome, status, service_s = self._call(r, background)
        if not background:
            run.status[i] = status
            run.service_ms[i] += service_s * 1000.0
        self.env.timeout(service_s, (i, outcome, status)).callbacks.append(self._finished)

    def _call(self, r: int, background: bool) -> tuple[int, int, float]:
        """Send request r for real: (outcome, HTTP status or 0 when no call was made, service seconds)."""
        requests = self.sim.requests
        chat = synthesize_chat(requests, r, self.name, self.model)
        started = time.perf_counter()
        try:
            result = self.session.call(self.name, self.model, [{"role": "user", "content": chat.messages[0][1]}],
                                       system=chat.system, max_tokens=max(int(requests.output_tokens[r]), 1),
                                       cache=self.cache)
        except BudgetExceeded:
            self.refused += 1
            return REJECTED, 0, 0.0
        except ProviderError as error:
            self.calls += 1
            self.failed += 1
            if not background and error.status == 429:
                self.sim.retry_after_s[r] = error.retry_after_s or 0.0
            return ERROR, int(error.status or 0), time.perf_counter() - started
        self.calls += 1
        if background:
            self.background_cost_usd += result.cost_usd
        else:
            run = self.sim.run
            run.cached_input_tokens[r] = result.cached_input_tokens
            run.cache_write_tokens[r] = result.cache_write_tokens
            self.measured_cost_usd[r] += result.cost_usd
            self.measured_input_tokens[r] = result.input_tokens
            self.measured_output_tokens[r] = result.output_tokens
        return OK, 200, (result.latency_ms + result.retry_wait_ms) / 1000.0

    def _finished(self, event) -> None:
        i, outcome, status = event.value
        if self.waiting:
            self._serve(self.waiting.popleft())
        else:
            self.free_slots += 1
        if i < 0:
            self.sim.background_done(-1 - i, self)
            return
        self.sim.complete(i, outcome, status)
