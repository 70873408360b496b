"""Provider batch APIs: requests that can wait go to the batch endpoint at half price.

The story: a request that tolerates hours (the traffic's `may_wait` flag, a listed
priority, or — with neither — any request, thinned by `share`) is not sent to the live
endpoint but added to a batch job of its target provider (OpenAI Batch API, Anthropic
Message Batches, Gemini Batch Mode all bill 50 % of standard prices; genai-prices holds the
exact batch prices). It completes after a draw from `completion_s` (default: median 10
minutes, long-tailed); the providers promise completion within 24 hours, and at `expiry_s`
unfinished work is cancelled — not billed — while finished work is billed.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import Table
from lab.dists import Dist
from lab.ledger import BATCHED, ERROR
from lab.pricing import model_prices
from lab.scenario import PRIORITIES
from lab.stages.base import Options, Stage

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "batch_api"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("completion_s", "expiry_s")


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    share: float = 1.0
    priorities: tuple[str, ...] = ()          # e.g. ["low"]: only these priorities may wait
    completion_s: Dist = Dist("lognormal", median=600.0, sigma=1.0)
    expiry_s: float = 86_400.0


def parse(t: Table) -> Config:
    prios = t.raw("priorities", [])
    if not isinstance(prios, list) or any(p not in PRIORITIES for p in prios):
        t.fail("priorities", f"expected a list of {', '.join(PRIORITIES)}")
    return Config(share=t.probability("share", Config.share), priorities=tuple(prios),
                  completion_s=t.dist("completion_s", Config.completion_s),
                  expiry_s=t.number("expiry_s", Config.expiry_s, min=0.0, strict_min=True))


def validate(config: Config, scenario) -> tuple[str, str] | None:
    for p in scenario.providers:
        if model_prices(p.name, p.model).batch is None:
            return "stage", f"genai-prices has no batch prices for {p.name}/{p.model}"
    return None


class BatchApiStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        n = len(sim.requests)
        self.thin = rng.random(n) < config.share
        self.completion_s = config.completion_s.sample(rng, n)
        self.allowed = {PRIORITIES.index(p) for p in config.priorities}
        self.sent = self.expired = 0

    def eligible(self, i: int) -> bool:
        req = self.sim.requests
        if req.may_wait is not None and not req.may_wait[i]:
            return False
        if self.allowed and int(req.priority[i]) not in self.allowed:
            return False
        return bool(self.thin[i])

    def on_request(self, i: int) -> bool:
        if not self.eligible(i):
            return False
        sim = self.sim
        k = int(sim.target[i])
        run = sim.run
        run.provider[i] = k
        run.t_dispatch_s[i] = sim.env.now
        run.provider_calls += 1          # a batch job's requests are answered one by one: a call each
        self.sent += 1
        wait_s = float(self.completion_s[i])
        if wait_s > self.config.expiry_s:
            sim.env.timeout(self.config.expiry_s, i).callbacks.append(self._expired)
        else:
            sim.env.timeout(wait_s, i).callbacks.append(self._finished)
        return True

    def _finished(self, event) -> None:
        i = event.value
        sim = self.sim
        provider = sim.providers[int(sim.run.provider[i])]
        batch = sim.price_of(provider).batch
        s = slice(i, i + 1)
        sim.run.extra_cost_usd[i] += float(batch.cost_usd(sim.run.input_tokens[s], sim.run.output_tokens[s])[0])
        sim.run.service_ms[i] = (sim.env.now - sim.run.t_dispatch_s[i]) * 1000.0
        sim.run.status[i] = 200
        sim.answer(i, BATCHED, self)

    def _expired(self, event) -> None:
        i = event.value
        self.expired += 1
        self.sim.run.status[i] = 0
        self.sim.answer(i, ERROR, self)
        self.sim.run.answered_by[i] = -1

    def stats(self) -> dict:
        return {"sent_to_batch": self.sent, "expired": self.expired}


Stage = BatchApiStage
