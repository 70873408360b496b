"""Resilience: retries with backoff, a circuit breaker per provider, and fallback.

The story of a failed call: a 429, a 5xx or an outage is retried after an exponential
backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter", 2015),
never sooner than the provider's Retry-After; a 400 is the request's own fault and is not
retried. Each provider has a circuit breaker: after `breaker_failures` consecutive
server failures it opens and calls fail fast (or fall back to another provider) for
`open_s`; then it lets one probe through (half-open) and closes again if the probe succeeds.
Or, as most production breakers do, it opens when the share of server failures among the
calls of the last `breaker_window_s` reaches `breaker_error_rate` (given `breaker_min_calls`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from lab.config import Table
from lab.ledger import ERROR, OK
from lab.stages.base import Options, Stage

NAME = "retry"
RETRYABLE = (429, 500, 502, 503, 529)
SERVER_FAILURES = (500, 502, 503, 529)
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    max_attempts: int = 4                 # the first call included
    base_ms: float = 500.0
    max_backoff_ms: float = 30_000.0
    jitter: bool = True                   # full jitter: uniform(0, backoff)
    breaker_failures: int = 0             # consecutive 5xx that open the breaker; 0 = no breaker
    open_s: float = 30.0
    fallback: bool = False                # send to the next provider while the target's breaker is open
    breaker_error_rate: float = 0.0       # open when this share of recent calls failed; 0 = off
    breaker_window_s: float = 30.0        # ... over the calls of this many seconds
    breaker_min_calls: int = 10           # ... once the window holds at least this many calls

    @property
    def has_breaker(self) -> bool:
        return bool(self.breaker_failures or self.breaker_error_rate)


def parse(t: Table) -> Config:
    return Config(max_attempts=t.integer("max_attempts", Config.max_attempts, min=1),
                  base_ms=t.number("base_ms", Config.base_ms, min=0.0),
                  max_backoff_ms=t.number("max_backoff_ms", Config.max_backoff_ms, min=0.0),
                  jitter=t.boolean("jitter", Config.jitter),
                  breaker_failures=t.integer("breaker_failures", Config.breaker_failures, min=0),
                  open_s=t.number("open_s", Config.open_s, min=0.0, strict_min=True),
                  fallback=t.boolean("fallback", Config.fallback),
                  breaker_error_rate=t.number("breaker_error_rate", Config.breaker_error_rate, min=0.0, max=1.0),
                  breaker_window_s=t.number("breaker_window_s", Config.breaker_window_s, min=0.0, strict_min=True),
                  breaker_min_calls=t.integer("breaker_min_calls", Config.breaker_min_calls, min=1))


class Breaker:
    """Closed, open or half-open, with the time of every transition kept for inspection."""

    def __init__(self, failures_to_open: int, open_s: float, error_rate: float = 0.0, window_s: float = 30.0,
                 min_calls: int = 10):
        self.failures_to_open, self.open_s = failures_to_open, open_s
        self.error_rate, self.window_s, self.min_calls = error_rate, window_s, min_calls
        self.recent: deque[tuple[float, bool]] = deque()     # (time, failed) of calls in the window
        self.recent_failures = 0
        self.state, self.failures, self.opened_s, self.probe = CLOSED, 0, 0.0, None
        self.transitions: list[tuple[float, str, str]] = []

    def _go(self, state: str, now: float) -> None:
        self.transitions.append((now, self.state, state))
        self.state = state

    def allows(self, i: int, now: float) -> bool:
        """May request i be sent now? In half-open, only one probe at a time."""
        if self.state == OPEN and now - self.opened_s >= self.open_s:
            self._go(HALF_OPEN, now)
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and self.probe is None:
            self.probe = i
            return True
        return False

    def record(self, i: int, failed: bool, now: float) -> None:
        if self.state == HALF_OPEN and i == self.probe:
            self.probe = None
            if failed:
                self.opened_s = now
                self._go(OPEN, now)
            else:
                self.failures = 0
                self._go(CLOSED, now)
            return
        if self.state != CLOSED:
            return
        self.failures = self.failures + 1 if failed else 0
        if self.failures_to_open and self.failures >= self.failures_to_open:
            self.opened_s = now
            self._go(OPEN, now)
        elif self.error_rate and self._rate_trips(failed, now):
            self.opened_s = now
            self._go(OPEN, now)

    def _rate_trips(self, failed: bool, now: float) -> bool:
        """Add a call to the sliding window; True when the window's failure share reaches the rate."""
        self.recent.append((now, failed))
        self.recent_failures += failed
        while self.recent and self.recent[0][0] <= now - self.window_s:
            self.recent_failures -= self.recent.popleft()[1]
        if len(self.recent) >= self.min_calls and self.recent_failures >= self.error_rate * len(self.recent):
            self.recent.clear()
            self.recent_failures = 0
            return True
        return False


class RetryStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.breakers = [Breaker(config.breaker_failures, config.open_s, config.breaker_error_rate,
                                 config.breaker_window_s, config.breaker_min_calls) for _ in sim.providers]
        self.retries = self.gave_up = self.fast_failures = self.fallbacks = 0

    def _backoff_s(self, attempt: int) -> float:
        c = self.config
        ceiling = min(c.max_backoff_ms, c.base_ms * 2 ** (attempt - 1)) / 1000.0
        return float(self.rng.uniform(0.0, ceiling)) if c.jitter else ceiling

    def _usable(self, k: int, i: int, now: float) -> bool:
        return not self.config.has_breaker or self.breakers[k].allows(i, now)

    def _choose(self, i: int) -> bool:
        """Keep or change request i's target so its breaker lets it through; False if none does."""
        sim, now = self.sim, self.sim.env.now
        k = int(sim.target[i])
        if self._usable(k, i, now):
            return True
        if self.config.fallback:
            for other in range(len(sim.providers)):
                if other != k and self._usable(other, i, now):
                    sim.target[i] = other
                    self.fallbacks += 1
                    self.touch(i)
                    return True
        return False

    def on_request(self, i: int) -> bool:
        if self._choose(i):
            return False
        self.fast_failures += 1
        self.sim.run.status[i] = 503
        self.sim.answer(i, ERROR, self)     # breaker open, nowhere to go: fail fast
        self.sim.run.answered_by[i] = -1    # no saving: it failed
        return True

    def on_response(self, i: int) -> bool:
        sim, run, now = self.sim, self.sim.run, self.sim.env.now
        status = int(run.status[i])
        k = int(run.provider[i])
        if self.config.has_breaker and k >= 0:
            self.breakers[k].record(i, status in SERVER_FAILURES, now)
        if run.outcome[i] == OK or status not in RETRYABLE:
            return False
        attempt = int(run.attempts[i])
        if attempt >= self.config.max_attempts:
            self.gave_up += 1
            return False
        delay_s = self._backoff_s(attempt)
        if status == 429:
            delay_s = max(delay_s, float(sim.retry_after_s[i]))
        self.retries += 1
        self.touch(i)
        sim.env.timeout(delay_s, i).callbacks.append(self._resend)
        return True

    def _resend(self, event) -> None:
        i = event.value
        if self._choose(i):
            self.sim.run.cached_input_tokens[i] = 0
            self.sim.run.cache_write_tokens[i] = 0
            self.sim.dispatch(i)
            return
        self.fast_failures += 1
        self.sim.run.outcome[i] = ERROR
        self.sim.run.status[i] = 503
        self.sim.run.t_done_s[i] = self.sim.env.now
        self.sim.finish_upstream(i, self.index)

    def saved_usd(self, result) -> float:
        return 0.0  # retries buy success, not savings (a failed call is not billed)

    def stats(self) -> dict:
        return {"retries": self.retries, "gave_up": self.gave_up, "fast_failures": self.fast_failures,
                "fallbacks": self.fallbacks,
                "breaker_transitions": {self.sim.providers[k].name + "/" + self.sim.providers[k].model: len(b.transitions)
                                        for k, b in enumerate(self.breakers) if b.transitions}}


Stage = RetryStage
