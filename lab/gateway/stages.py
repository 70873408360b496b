"""The live halves of the simulator's stages: the same `[[pipeline]]` configs, acting on real requests.

Each class reads the Config dataclass its simulated stage parsed (`lab.stages.<name>.Config`),
so a pipeline pasted from a scenario (or from `recommend`) means the same thing here. State
lives in the process (a response cache and in-flight calls are per gateway process); spend,
which must hold across processes, lives in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass

from lab.buckets import TokenBucket


@dataclass(frozen=True)
class Answer:
    """A finished upstream answer as it is sent back (and kept for cache hits and coalesced followers)."""

    status: int
    content_type: str
    body: bytes
    cost_usd: float
    usage: dict


def request_keys(provider: str, path: str, body: dict, learners: tuple[str | None, ...]) -> list[str]:
    """A key for each of `learners` (None: shared); identical requests share a key: same endpoint,
    same body, same learner. The body is made canonical once."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return [hashlib.sha256("\x00".join((provider, path, learner or "", canonical)).encode()).hexdigest()
            for learner in learners]


class ResponseCache:
    """Exact-match response cache: LRU or FIFO over `capacity` entries, each kept `ttl_s` (fixed or sliding)."""

    def __init__(self, config):
        self.config = config
        self.entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str, now_s: float | None = None) -> Answer | None:
        now_s = time.monotonic() if now_s is None else now_s
        item = self.entries.get(key)
        if item is None or (self.config.ttl_s is not None and item[0] <= now_s):
            if item is not None:
                del self.entries[key]
            self.misses += 1
            return None
        self.hits += 1
        if self.config.policy == "lru":
            self.entries.move_to_end(key)
        if self.config.ttl_s is not None and self.config.ttl_mode == "sliding":
            self.entries[key] = (now_s + self.config.ttl_s, item[1])
        return item[1]

    def put(self, key: str, answer: Answer, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        expiry = now_s + self.config.ttl_s if self.config.ttl_s is not None else float("inf")
        self.entries[key] = (expiry, answer)
        self.entries.move_to_end(key)
        while self.config.capacity is not None and len(self.entries) > self.config.capacity:
            self.entries.popitem(last=False)


class InFlight:
    """In-flight deduplication: followers of an identical request wait for the leader's answer."""

    def __init__(self, config):
        self.config = config
        self.flights: dict[str, asyncio.Future] = {}
        self.leaders = self.followers = 0

    def join(self, key: str) -> asyncio.Future | None:
        """The leader's future to wait on, or None when this request leads (call `done` when it finishes)."""
        future = self.flights.get(key)
        if future is not None:
            self.followers += 1
            return future
        self.leaders += 1
        self.flights[key] = asyncio.get_running_loop().create_future()
        return None

    def done(self, key: str, answer: Answer | None) -> None:
        future = self.flights.pop(key, None)
        if future is not None and not future.done():
            future.set_result(answer)


class RateLimiter:
    """A client-side rpm/tpm bucket: a request waits until it fits, as the simulated stage queues it."""

    def __init__(self, config):
        self.buckets = [(TokenBucket(v), kind) for kind, v in (("rpm", config.rpm), ("tpm", config.tpm)) if v]
        self.queued = 0

    async def wait(self, tokens: int) -> float:
        """Wait for room for one request of `tokens` (input + max_tokens); the seconds waited."""
        waited = 0.0
        while True:
            now = time.monotonic()
            wait_s = max((b.wait_s(1 if kind == "rpm" else tokens, now) for b, kind in self.buckets), default=0.0)
            if wait_s <= 0 or wait_s == float("inf"):   # larger than a minute's allowance: it goes alone
                for b, kind in self.buckets:
                    b.take(1 if kind == "rpm" else tokens)
                return waited
            self.queued += waited == 0.0
            await asyncio.sleep(wait_s)
            waited += wait_s


class LearnerRate:
    """Each learner's own requests-per-minute cap (a refusal, not a wait: it is a limit, not a pacing)."""

    def __init__(self):
        self.buckets: dict[str, TokenBucket] = {}

    def retry_after_s(self, learner: str, rpm: float | None) -> float:
        """0 when the learner may send now (one request is counted), else the seconds until they may."""
        if not rpm:
            return 0.0
        bucket = self.buckets.get(learner)
        if bucket is None or bucket.capacity != rpm:
            bucket = self.buckets[learner] = TokenBucket(rpm)
        now = time.monotonic()
        wait_s = bucket.wait_s(1, now)
        if wait_s > 0:
            return wait_s
        bucket.take(1)
        return 0.0
