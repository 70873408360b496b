"""Client-side rate limiting: a token bucket in front of the provider, with priorities.

The story: before a request leaves, it takes one request and its tokens (input +
max_tokens) from per-minute buckets set below the provider's limits, so the provider
never answers 429. When the bucket is empty, a low- or normal-priority request waits in
line (normal before low, first come first served within a priority); a high-priority
request is let through anyway, with a warning counted — as the seed design describes.
With `reject_below = "normal"`, a request of lower priority than that is refused (429-style,
outcome `rejected`) instead of queued when it would have to wait: load shedding by priority.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from lab.buckets import TokenBucket
from lab.config import Table
from lab.ledger import REJECTED
from lab.scenario import PRIORITIES
from lab.stages.base import Options, Stage

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "rate_limit"
HIGH = 0


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    rpm: float = 0.0
    tpm: float = 0.0                   # input + max_tokens per minute
    high_priority: str = "pass"        # "pass" (with a warning) | "queue"
    reject_below: str = ""             # "high" | "normal": lower priorities are refused, not queued


def parse(t: Table) -> Config:
    c = Config(rpm=t.number("rpm", Config.rpm, min=0.0), tpm=t.number("tpm", Config.tpm, min=0.0),
               high_priority=t.string("high_priority", Config.high_priority, choices=("pass", "queue")),
               reject_below=t.string("reject_below", Config.reject_below, choices=("", "high", "normal")))
    if not c.rpm and not c.tpm:
        t.fail("rpm", "give rpm and/or tpm (per-minute limits for the client-side bucket)")
    return c


class RateLimitStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.buckets = [(TokenBucket(v), kind) for kind, v in (("rpm", config.rpm), ("tpm", config.tpm)) if v]
        self.lines = (deque(), deque(), deque())       # by priority: high, normal, low
        self.wake_pending = False
        self.queued = self.warnings = 0
        # priorities (indices into PRIORITIES) refused rather than queued when the bucket is empty
        self.shed_from = PRIORITIES.index(config.reject_below) + 1 if config.reject_below else len(PRIORITIES)
        self.rejected = [0] * len(PRIORITIES)
        self.wait_s_total = 0.0
        self.t_queued: dict[int, float] = {}
        req = sim.requests
        tokens = memoryview((req.input_tokens + req.max_tokens).astype(np.float64)) if config.tpm else None
        # each bucket with what every request draws from it, read as Python floats (the hot path)
        self.metered = [(b, tokens if kind == "tpm" else None) for b, kind in self.buckets]

    def _wait_s(self, i: int) -> float:
        """How long until request i fits every bucket (0.0 now); each bucket is refilled to now."""
        now, wait = self.sim.env._now, 0.0
        for b, amounts in self.metered:
            w = b.wait_s(1.0 if amounts is None else amounts[i], now)
            if w > wait:
                wait = w
        return wait

    def _take(self, i: int) -> None:
        for b, amounts in self.metered:
            b.take(1.0 if amounts is None else amounts[i])

    def on_request(self, i: int) -> bool:
        waiting = any(self.lines)
        if not waiting and self._wait_s(i) == 0.0:
            self._take(i)
            return False
        if int(self.sim.requests.priority[i]) == HIGH and self.config.high_priority == "pass":
            self.warnings += 1
            self.touch(i)
            for b, _ in self.buckets:
                b.refill(self.sim.env.now)
            self._take(i)          # counted against the bucket: it may go negative
            return False
        priority = int(self.sim.requests.priority[i])
        if priority >= self.shed_from:
            self.rejected[priority] += 1
            self.sim.answer(i, REJECTED, self)
            self.sim.run.answered_by[i] = -1        # shed load is not a saving
            return True
        self.queued += 1
        self.touch(i)
        self.t_queued[i] = self.sim.env.now
        self.lines[int(self.sim.requests.priority[i])].append(i)
        self._schedule()
        return True

    def _head(self):
        for line in self.lines:
            if line:
                return line
        return None

    def _schedule(self) -> None:
        line = self._head()
        if line is None or self.wake_pending:
            return
        wait = self._wait_s(line[0])
        if wait == float("inf"):   # larger than the whole bucket: let it go rather than wait forever
            wait = 0.0
        else:
            wait = max(wait, 1e-6)  # a wait must move the clock, or refills never happen
        self.wake_pending = True
        self.sim.env.timeout(wait).callbacks.append(self._release)

    def _release(self, event) -> None:
        self.wake_pending = False
        while (line := self._head()) is not None:
            i = line[0]
            wait = self._wait_s(i)
            if wait and wait != float("inf"):
                break
            line.popleft()
            self._take(i)
            self.wait_s_total += self.sim.env.now - self.t_queued.pop(i)
            self.sim.forward(i, self.index + 1)
        self._schedule()

    def saved_usd(self, result) -> float:
        return 0.0   # it buys fewer 429s and retries, not cheaper tokens

    def stats(self) -> dict:
        shed = ({"rejected_by_priority": dict(zip(PRIORITIES, self.rejected))} if self.config.reject_below else {})
        return {"queued": self.queued, "high_priority_warnings": self.warnings, **shed,
                "mean_wait_s": self.wait_s_total / self.queued if self.queued else 0.0}


Stage = RateLimitStage
