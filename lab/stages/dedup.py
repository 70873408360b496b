"""In-flight deduplication (single-flight): identical requests share one provider call.

The story: the first request for a key becomes the leader and goes on; identical
requests arriving while it is in flight attach to it and pay nothing; when the leader's
answer returns, every follower gets it at that moment (their latency is the leader's
remaining time). An optional soft window (`window_s`) also reuses an answer completed
within the last `window_s` seconds. Keys include the tenant unless `shared = true`, so
one tenant's answer never leaks to another; non-cacheable requests are never merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.ledger import DEDUPLICATED, OK
from lab.stages._singleflight import SingleFlight
from lab.stages.base import Options, Stage
from lab.stages.cache import request_keys

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "dedup"


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    window_s: float = 0.0       # also reuse an answer completed this recently (0 = in flight only)
    shared: bool = False        # merge identical requests across tenants


def parse(t: Table) -> Config:
    return Config(window_s=t.number("window_s", Config.window_s, min=0.0), shared=t.boolean("shared", Config.shared))


class DedupStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.flights = SingleFlight()
        self.recent: dict[int, float] = {}            # key -> when its last answer completed
        self.leaders = self.followers = self.window_hits = 0
        self.keys = request_keys(sim.requests, config.shared)
        self.cacheable = memoryview(np.ascontiguousarray(sim.requests.cacheable))   # Python bools, no list

    def key(self, i: int) -> int:
        return self.keys[i]

    def on_request(self, i: int) -> bool:
        if not self.cacheable[i]:
            return False
        key = self.keys[i]
        if self.flights.follow(key, i):
            self.followers += 1
            self.touch(i)
            return True
        window = self.config.window_s
        if window:
            done_s = self.recent.get(key)
            if done_s is not None and self.sim.env.now - done_s <= window:
                self.window_hits += 1
                self.sim.answer(i, DEDUPLICATED, self)
                return True
        self.flights.lead(key, i)
        self.leaders += 1
        return False

    def on_response(self, i: int) -> None:
        if not self.cacheable[i]:
            return
        key = self.keys[i]
        followers = self.flights.release(key, i)
        if followers is None:
            return
        for follower in followers:
            self.sim.follow(follower, i, self, DEDUPLICATED)
        if self.config.window_s and self.sim.run.outcome[i] == OK:
            self.recent[key] = self.sim.env.now

    def stats(self) -> dict:
        return {"leaders": self.leaders, "followers": self.followers, "window_hits": self.window_hits}


Stage = DedupStage
