"""A mock provider: a multi-server FIFO queue in SimPy, with errors and outage windows.

The story: a request waits for one of `concurrency` slots, holds it for its service time
(a latency distribution, or time-to-first-token plus output tokens / tokens-per-second),
then answers — or fails, with probability `error_rate`, or at once during an outage.

Why callbacks and not a process per request: a process costs a `Request`, a `Timeout`
and a generator resume per request; here a request that finds a free slot costs exactly
one `Timeout` whose callback frees the slot and starts the next waiter. The queueing is
the same M/M/c (or G/G/c) FIFO discipline, checked against Erlang C in the tests.
Service times and error draws are drawn per request up front from this provider's own
random stream, so a run and its baseline see the same numbers for the same request.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from lab.ledger import ERROR, OK
from lab.models import model_info
from lab.scenario import Provider


class MockProvider:
    """One provider/model endpoint with a concurrency limit, served first come first served."""

    def __init__(self, sim, config: Provider, index: int, rng: np.random.Generator):
        self.sim, self.env, self.config, self.index = sim, sim.env, config, index
        self.name, self.model = config.name, config.model
        self.info = model_info(config.name, config.model)
        self.free_slots = config.concurrency
        self.waiting: deque[int] = deque()
        self.service_s = self._draw_service_s(rng, sim.requests.output_tokens)
        self.fails = rng.random(len(sim.requests)) < config.error_rate if config.error_rate else None
        self.outages = config.outages
        self.calls = 0

    def _draw_service_s(self, rng, output_tokens: np.ndarray) -> np.ndarray:
        cfg, n = self.config, len(output_tokens)
        if cfg.latency_ms is not None:
            ms = cfg.latency_ms.sample(rng, n)
        else:
            ttft = cfg.ttft_ms.sample(rng, n) if cfg.ttft_ms is not None else np.full(n, self.info.ttft_ms)
            tokens_per_s = cfg.tokens_per_s or self.info.tokens_per_s
            ms = ttft + output_tokens * (1000.0 / tokens_per_s)
        return ms / 1000.0

    def in_outage(self, t_s: float) -> bool:
        return any(start <= t_s < end for start, end in self.outages)

    # -- the story -------------------------------------------------------------------

    def submit(self, i: int) -> None:
        """Request i arrives at the provider: take a free slot or wait in line."""
        run = self.sim.run
        run.provider[i] = self.index
        run.t_dispatch_s[i] = self.env.now
        if self.outages and self.in_outage(self.env.now):
            self._answer_after(i, self.config.error_latency_ms / 1000.0)
            return
        if self.free_slots:
            self.free_slots -= 1
            self._serve(i)
        else:
            self.waiting.append(i)

    def submit_background(self, i: int) -> None:
        """A fetch on behalf of request i that no one waits for (e.g. an early cache refresh)."""
        if self.outages and self.in_outage(self.env.now):
            return
        if self.free_slots:
            self.free_slots -= 1
            self._serve(-1 - i)
        else:
            self.waiting.append(-1 - i)

    def _serve(self, i: int) -> None:
        self.calls += 1
        if i < 0:  # background fetch: occupies a slot, writes nothing to the ledger row
            self.env.timeout(self.service_s[-1 - i], i).callbacks.append(self._finished)
            return
        run, now = self.sim.run, self.env.now
        run.queue_ms[i] = (now - run.t_dispatch_s[i]) * 1000.0
        self.sim.on_start(i, self)
        if self.fails is not None and self.fails[i]:
            service_s = min(self.config.error_latency_ms / 1000.0, self.service_s[i]) \
                if self.config.error_latency_ms else self.service_s[i]
        else:
            service_s = self.service_s[i]
        run.service_ms[i] = service_s * 1000.0
        self.env.timeout(service_s, i).callbacks.append(self._finished)

    def _finished(self, event) -> None:
        i = event.value
        if self.waiting:
            self._serve(self.waiting.popleft())
        else:
            self.free_slots += 1
        if i < 0:
            self.sim.background_done(-1 - i, self)
            return
        failed = self.fails is not None and self.fails[i]
        self.sim.complete(i, ERROR if failed else OK)

    def _answer_after(self, i: int, delay_s: float) -> None:
        """An outage refuses the connection: an error after `error_latency_ms`, no slot used."""
        self.sim.run.service_ms[i] = delay_s * 1000.0
        self.env.timeout(delay_s, i).callbacks.append(lambda ev: self.sim.complete(ev.value, ERROR))
