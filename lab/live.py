"""A spend-capped sandbox for real provider calls, recorded to a cassette that replays them offline.

`Session(budget_usd=0.50)` sends chat calls through the official SDKs
(`lab.providers.sdk`) and keeps three promises:

- **a hard cap**: a call is refused (`BudgetExceeded`) unless its worst case — the prompt's
  counted tokens priced as uncached input (or as cache writes where the rule book says the
  call can write: an Anthropic cache breakpoint, any call to an OpenAI model that bills writes,
  from the model's minimum on), plus `max_tokens` of output — fits in what is left of the budget. Claude and
  Gemini token counts are tiktoken estimates, so they get a 30 % margin. Reasoning and
  thinking tokens count as output within `max_tokens` (OpenAI's max_completion_tokens;
  Gemini's max_output_tokens caps thoughts and reply together, as the API behaves —
  googleapis/python-genai#2062 — though Google's thinking page describes them apart).
- **polite retries**: 429, 529 (Anthropic overloaded) and 5xx answers are retried with
  exponential backoff and jitter, waiting at least what `Retry-After` asks; other errors are
  not. Failed attempts cost nothing, so a retried call is billed once.
- **a record**: every call (request body, response, text, usage, cost, latency; never a
  key) is appended to a JSONL cassette, one flushed line per call, and
  `Session(mode="replay", cassette=...)` answers the same requests from it with no network.

In a simulation, a `kind = "live"` or `"replay"` provider entry calls through a Session
from `RUN_SESSIONS`, so a run and its baseline share one budget and one cassette.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab.errors import BudgetExceeded, ConfigError, CostlabError
from lab.pricing import model_prices, price_usage_exact
from lab.provider_rules import cache_rules
from lab.providers.sdk import Chat, ProviderError, Usage, adapter_for, known_secrets, redact, scrub
from lab.tokens import is_exact

MODES = ("live", "replay")
#: a prompt counted with an estimated tokenizer (Claude, Gemini) may be this much longer for real
ESTIMATE_MARGIN = 1.3
CASSETTE_VERSION = 1


class ReplayMiss(CostlabError):
    """Replay mode was asked for a call the cassette does not hold."""


@dataclass(frozen=True)
class CallResult:
    """One answered call. `input_tokens` is the whole prompt; `cached_input_tokens` the part read from cache."""

    provider: str
    model: str
    text: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float          # the attempt that answered
    retry_wait_ms: float = 0.0  # failed attempts and backoff before it
    attempts: int = 1
    replayed: bool = False

    def as_dict(self) -> dict:
        """The fields `costlab call --json` prints."""
        return {"provider": self.provider, "model": self.model, "input_tokens": self.input_tokens,
                "cached_input_tokens": self.cached_input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` tries; waits double from `base_delay_s`, jittered, capped at `max_delay_s`.

    A `Retry-After` longer than `max_delay_s` ends the retries: waiting less would fail again.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based), or None to give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after_s is not None:
            if retry_after_s > self.max_delay_s:
                return None
            return retry_after_s + rng.uniform(0.0, 0.1 * retry_after_s)  # at least what was asked
        backoff_s = min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)
        return rng.uniform(0.5 * backoff_s, backoff_s)


def request_key(provider: str, model: str, body: dict) -> str:
    """What identifies a request in a cassette: provider, model and the exact body, hashed."""
    canonical = json.dumps([provider, model, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Cassette:
    """A JSONL record of calls: appended one flushed line per call, read back for replay."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict) -> None:
        """Add one call; every known key is scrubbed from the line before it is written."""
        line = redact(json.dumps(entry, ensure_ascii=False, separators=(",", ":")), known_secrets())
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def entries(self) -> list[dict]:
        """Every recorded call; a torn last line (a crash mid-write) is skipped, a corrupt one elsewhere is an error."""
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such cassette; record one with mode='live' first")
        lines = self.path.read_text(encoding="utf-8").splitlines()
        out = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if n == len(lines):
                    continue
                raise ConfigError(f"{self.path}: line {n} is not JSON; the cassette is corrupt") from None
            if not isinstance(entry, dict) or "key" not in entry:
                raise ConfigError(f"{self.path}: line {n}: expected a recorded call with a 'key'")
            out.append(entry)
        return out

    def index(self) -> dict[str, deque]:
        """Recorded calls by request key, in the order they were made."""
        by_key: dict[str, deque] = {}
        for entry in self.entries():
            by_key.setdefault(entry["key"], deque()).append(entry)
        return by_key


class Session:
    """Real calls (or replayed ones) under a hard spend cap, each recorded to an optional cassette.

    `base_url` is handed to the SDK as it takes it: one URL for every provider, or a mapping
    `{provider: url}` (e.g. `FakeProviderServer.base_urls()`).
    """

    def __init__(self, budget_usd: float, cassette: str | os.PathLike | None = None, mode: str = "live",
                 base_url: str | Mapping[str, str] | None = None, *, retry: RetryPolicy = RetryPolicy(),
                 timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        if mode not in MODES:
            raise ConfigError(f"mode: expected 'live' or 'replay', got {mode!r}")
        if not isinstance(budget_usd, (int, float)) or math.isnan(budget_usd) or budget_usd < 0:
            raise ConfigError(f"budget_usd: expected a number of US dollars >= 0, got {budget_usd!r}")
        if mode == "replay" and cassette is None:
            raise ConfigError("replay mode needs a cassette to answer from")
        self.budget_usd, self.mode, self.base_url = float(budget_usd), mode, base_url
        self.retry, self.timeout_s, self._sleep = retry, timeout_s, sleep
        self.cassette = Cassette(cassette) if cassette is not None else None
        self._replay = self.cassette.index() if mode == "replay" else None
        self._rng = random.Random(seed)
        self._adapters: dict = {}
        self._lock = threading.Lock()
        self.spent_usd = 0.0
        self._reserved_usd = 0.0
        self.calls = 0          # answered calls
        self.refused = 0        # calls refused by the budget
        self.overruns: list[str] = []   # calls billed above their worst case (the provider counted more)

    @property
    def remaining_usd(self) -> float:
        return self.budget_usd - self.spent_usd

    def adapter(self, provider: str):
        """The SDK adapter this session uses for `provider` (built on first use; it sends nothing)."""
        return self._adapter(provider)

    def _adapter(self, provider: str):
        if provider not in self._adapters:
            url = self.base_url.get(provider) if isinstance(self.base_url, Mapping) else self.base_url
            self._adapters[provider] = adapter_for(provider, url, self.timeout_s)
        return self._adapters[provider]

    # -- the cap ------------------------------------------------------------------------

    def worst_case_usd(self, provider: str, model: str, body: dict, max_tokens: int, cache: str | None) -> float:
        """The most `body` could cost: its counted prompt as uncached input or, where it can write, cache writes; plus `max_tokens` out."""
        model_prices(provider, model)  # an unpriceable model is refused with close names, not guessed
        counted = self._adapter(provider).input_tokens_estimate(body)
        prompt = counted if is_exact(model) else math.ceil(counted * ESTIMATE_MARGIN)
        rules = cache_rules(provider, model)
        asks = bool(cache) if provider == "anthropic" else True     # OpenAI GPT-5.6+ writes unasked
        can_write = rules.supports_caching and rules.write_charged and asks and prompt >= rules.min_cacheable_tokens
        written = prompt if can_write else 0
        return price_usage_exact(provider, model, input_tokens=prompt, output_tokens=int(max_tokens),
                                 cache_write_tokens=written, cache_write_1h_tokens=written if cache == "1h" else 0)

    @property
    def exhausted(self) -> bool:
        """True once billed spend has reached the budget: every further call is refused."""
        return self.spent_usd >= self.budget_usd > 0 or (self.budget_usd == 0 and self.spent_usd > 0)

    def _reserve(self, worst_usd: float, provider: str, model: str) -> None:
        with self._lock:
            if self.exhausted:
                self.refused += 1
                why = f"; {self.overruns[-1]}" if self.overruns else ""
                raise BudgetExceeded(f"{provider}/{model}: refused: the ${self.budget_usd:.6f} budget is spent "
                                     f"(billed ${self.spent_usd:.6f}){why}; no further calls in this session")
            left = self.budget_usd - self.spent_usd - self._reserved_usd
            if worst_usd > left + 1e-12:
                self.refused += 1
                raise BudgetExceeded(
                    f"{provider}/{model}: refused: this call could cost up to ${worst_usd:.6f} and "
                    f"${max(left, 0.0):.6f} of the ${self.budget_usd:.6f} budget is left "
                    f"(spent ${self.spent_usd:.6f}); lower max_tokens or raise budget_usd")
            self._reserved_usd += worst_usd

    def _settle(self, worst_usd: float, result: CallResult | None) -> None:
        """Book what the provider billed (not the estimate); say so when it exceeded the worst case."""
        with self._lock:
            self._reserved_usd -= worst_usd
            if result is None:
                return
            self.spent_usd += result.cost_usd
            self.calls += 1
            if result.cost_usd > worst_usd * (1 + 1e-9) + 1e-12:
                note = (f"{result.provider}/{result.model} billed ${result.cost_usd:.6f} against a worst case of "
                        f"${worst_usd:.6f} ({result.input_tokens:,} input and {result.output_tokens:,} output "
                        f"tokens reported)")
                self.overruns.append(note)
                over = self.spent_usd > self.budget_usd
        if result.cost_usd > worst_usd * (1 + 1e-9) + 1e-12:
            warnings.warn(note + (f"; spend ${self.spent_usd:.6f} is over the ${self.budget_usd:.6f} budget: "
                                  "further calls are refused" if over else ""), stacklevel=3)

    # -- a call -------------------------------------------------------------------------

    def call(self, provider: str, model: str, messages=None, *, prompt: str | None = None,
             max_tokens: int = 256, system: str | None = None, cache: str | None = None,
             thinking_budget_tokens: int | None = None) -> CallResult:
        """Send one chat call (`messages`, or a `prompt` string) and return what it cost.

        `cache` ("5m" or "1h", Anthropic only) marks the system prompt as a cache breakpoint;
        `thinking_budget_tokens` (Gemini only) sets the thinking budget, which counts
        against `max_tokens` as it does on the API.
        """
        if (messages is None) == (prompt is None):
            raise ConfigError("call: give either messages or prompt")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ConfigError(f"max_tokens: expected a positive integer, got {max_tokens!r}")
        adapter = self._adapter(provider)
        body = adapter.request(model, Chat.of(messages if prompt is None else prompt, system), max_tokens,
                               cache=cache, thinking_budget_tokens=thinking_budget_tokens)
        key = request_key(provider, model, body)
        worst_usd = self.worst_case_usd(provider, model, body, max_tokens, cache)
        self._reserve(worst_usd, provider, model)
        result = None
        try:
            if self._replay is not None:
                result = self._replayed(key, provider, model)
            else:
                result = self._live(adapter, key, provider, model, body)
            return result
        finally:
            self._settle(worst_usd, result)

    def _live(self, adapter, key: str, provider: str, model: str, body: dict) -> CallResult:
        attempts, wait_s = 0, 0.0
        adapter.client()  # made before the clock starts: latency is the provider's, not the import's
        while True:
            attempts += 1
            started = time.perf_counter()
            try:
                response = adapter.send(body)
            except ProviderError as error:
                delay_s = self.retry.delay_s(attempts, error.retry_after_s, self._rng) if error.retryable else None
                if delay_s is None:
                    failure = error
                    break
                wait_s += time.perf_counter() - started + delay_s
                self._sleep(delay_s)
                continue
            latency_ms = (time.perf_counter() - started) * 1000.0
            usage, cost_usd = adapter.usage_and_cost(response, model)
            result = _result(provider, model, adapter.text(response), usage, cost_usd, latency_ms,
                             wait_s * 1000.0, attempts)
            self._record(key, provider, model, body, response=response, result=result, usage=usage)
            return result
        tried = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        error = ProviderError(provider, f"{failure}{tried}", failure.status, failure.retry_after_s)
        self._record(key, provider, model, body, error=error, attempts=attempts)
        raise error

    def _record(self, key, provider, model, body, *, response=None, result=None, usage=None, error=None,
                attempts=None) -> None:
        if self.cassette is None:
            return
        entry = {"v": CASSETTE_VERSION, "key": key, "provider": provider, "model": model, "request": body,
                 "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if error is not None:
            entry.update(error={"status": error.status, "message": str(error)}, attempts=attempts)
        else:
            entry.update(response=response, text=result.text, usage=usage.as_dict(), cost_usd=result.cost_usd,
                         latency_ms=result.latency_ms, retry_wait_ms=result.retry_wait_ms,
                         attempts=result.attempts)
        self.cassette.append(entry)

    def _replayed(self, key: str, provider: str, model: str) -> CallResult:
        """The next recorded answer to this request (the last one again once they run out)."""
        with self._lock:
            queue = self._replay.get(key)
            if not queue:
                raise ReplayMiss(f"{self.cassette.path}: no recorded {provider}/{model} call matches this request "
                                 f"(key {key[:12]}); record it first with mode='live'")
            entry = queue.popleft() if len(queue) > 1 else queue[0]
        if "error" in entry:
            err = entry["error"]
            raise ProviderError(provider, f"replayed: {scrub(str(err.get('message', '')), known_secrets())}",
                                err.get("status"))
        u = entry["usage"]
        usage = Usage(**{k: int(u.get(k, 0)) for k in Usage.__dataclass_fields__})
        return _result(provider, model, entry.get("text", ""), usage, float(entry["cost_usd"]),
                       float(entry.get("latency_ms", 0.0)), float(entry.get("retry_wait_ms", 0.0)),
                       int(entry.get("attempts", 1)), replayed=True)


def _result(provider, model, text, usage: Usage, cost_usd, latency_ms, retry_wait_ms, attempts,
            replayed=False) -> CallResult:
    return CallResult(provider=provider, model=model, text=text, input_tokens=usage.input_tokens,
                      cached_input_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens,
                      output_tokens=usage.output_tokens, cost_usd=cost_usd, latency_ms=latency_ms,
                      retry_wait_ms=retry_wait_ms, attempts=attempts, replayed=replayed)


class RunSessions:
    """One Session per live provider entry per request stream, so a run and its baseline share a budget.

    `simulate()` plays the same stream (one `Requests` object) through the optimized pipeline
    and the baseline: both runs draw on one budget and one cassette, and a replay of them
    answers both in the order they were recorded. A new stream (a new `simulate()`) starts afresh.
    """

    def __init__(self):
        self._by_stream: dict[int, tuple] = {}

    def get(self, requests, config) -> Session:
        """The session of provider entry `config` for request stream `requests` (made at first use)."""
        for key in [k for k, (ref, _) in self._by_stream.items() if ref() is None]:
            del self._by_stream[key]
        ref, sessions = self._by_stream.get(id(requests), (None, None))
        if ref is None or ref() is not requests:
            sessions = {}
            self._by_stream[id(requests)] = (weakref.ref(requests), sessions)
        kind = getattr(config, "kind", "live")
        key = (config.name, config.model, kind, getattr(config, "base_url", None),
               getattr(config, "cassette", None), getattr(config, "budget_usd", None))
        if key not in sessions:
            budget = getattr(config, "budget_usd", None)
            if budget is None:
                raise ConfigError(f"providers: {config.name}/{config.model} kind = {kind!r} needs budget_usd")
            sessions[key] = Session(budget_usd=budget, cassette=getattr(config, "cassette", None),
                                    mode="replay" if kind == "replay" else "live",
                                    base_url=getattr(config, "base_url", None), seed=0)
        return sessions[key]


#: the sessions `lab.sim.Simulation.live_session` hands to live providers
RUN_SESSIONS = RunSessions()
