"""A mock provider: a multi-server FIFO queue in SimPy, with rate limits, errors and outages.

The story: a request reaches the provider; if its organisation is over its requests- or
tokens-per-minute limit it is refused at once with a 429 and a Retry-After; during an
outage it is refused with a 5xx; otherwise it waits for one of `concurrency` slots, holds
it for its service time (a latency distribution, or time-to-first-token plus output
tokens / tokens-per-second), then answers — or fails with a 500 (`error_rate`) or a 400
(`bad_request_rate`).

Why callbacks and not a process per request: a process costs a `Request`, a `Timeout`
and a generator resume per request; here a request that finds a free slot costs exactly
one `Timeout` whose callback frees the slot and starts the next waiter. The queueing is
the same M/M/c (or G/G/c) FIFO discipline, checked against Erlang C and against a
textbook SimPy model in the tests and the benchmark. Service times and failure draws are
drawn per request up front from this provider's own random stream, so a run and its
baseline see the same numbers for the same request.
"""

from __future__ import annotations

import heapq
from collections import deque
from heapq import heappush

import numpy as np

from lab.buckets import TokenBucket
from lab.ledger import ERROR, OK
from lab.models import model_info
from lab.quality import quality_curve
from lab.scenario import Provider

#: the status an overloaded provider answers with during an outage
OUTAGE_STATUS = {"openai": 503, "anthropic": 529, "google": 503}
#: SimPy's priority of a Timeout (simpy.core.NORMAL)
NORMAL = 1


class _Done:
    """A completion on SimPy's queue: all `Environment.step` reads of an event, and no more.

    Scheduled exactly as `env.timeout(delay, value)` would be (same time, priority and event
    id), so the event order is SimPy's; it skips the Timeout's construction on the hot path.
    """

    __slots__ = ("callbacks", "value")
    _ok = True

    def __init__(self, value, callback):
        self.value, self.callbacks = value, [callback]


class MockProvider:
    """One provider/model endpoint with a concurrency limit, served first come first served."""

    def __init__(self, sim, config: Provider, index: int, rng: np.random.Generator):
        self.sim, self.env, self.config, self.index = sim, sim.env, config, index
        self.name, self.model = config.name, config.model
        self.info = model_info(config.name, config.model)
        self.free_slots = config.concurrency
        self.waiting: deque[int] = deque()
        req = sim.requests
        factor = {"flex": config.flex_slowdown, "priority": config.priority_speedup}.get(config.service_tier, 1.0)
        self.service_s = self._draw_service_s(rng, req.output_tokens) * factor
        self._service_s = memoryview(np.ascontiguousarray(self.service_s, dtype=np.float64))   # read as floats
        # time per streamed output token (0 when latency_ms gives the whole service time)
        self.seconds_per_token = (0.0 if config.latency_ms is not None
                                  else factor / (config.tokens_per_s or self.info.tokens_per_s))
        self.shed = (rng.random(len(req)) < config.flex_shed_rate
                     if config.service_tier == "flex" and config.flex_shed_rate else None)
        n = len(req)
        draws = rng.random(n) if (config.error_rate or config.bad_request_rate) else None
        self.fails = draws < config.error_rate if config.error_rate else None
        self.bad = (draws >= 1.0 - config.bad_request_rate) if config.bad_request_rate else None
        self.outages = config.outages
        self.outage_status = OUTAGE_STATUS.get(config.name, 503)
        limits = config.limits(self.info)
        self.buckets = [(TokenBucket(v), kind) for kind, v in limits.items() if v]
        self.retry_rng = np.random.default_rng(rng.integers(1 << 62))  # fresh draws for retried attempts
        self.calls = self.rate_limited = 0
        self._queue, self._eid = self.env._queue, self.env._eid

    def _after(self, delay_s: float, value, callback) -> None:
        """`env.timeout(delay_s, value).callbacks.append(callback)`, without the Timeout."""
        heappush(self._queue, (self.env._now + delay_s, NORMAL, next(self._eid), _Done(value, callback)))

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

    def _usage(self, i: int, kind: str) -> float:
        req, run = self.sim.requests, self.sim.run
        if kind == "rpm":
            return 1.0
        if kind == "itpm":
            return float(run.input_tokens[i])
        if kind == "otpm":
            return float(req.max_tokens[i])
        return float(run.input_tokens[i] + req.max_tokens[i])   # tpm: input + max_tokens, as OpenAI estimates

    def _over_limit_s(self, i: int) -> float:
        """0 if request i fits every limit now (and takes its share), else the Retry-After."""
        now, wait = self.env._now, 0.0
        for bucket, kind in self.buckets:
            w = bucket.wait_s(self._usage(i, kind), now)
            if w > wait:
                wait = w
        if wait == 0.0:
            for bucket, kind in self.buckets:
                bucket.take(self._usage(i, kind))
        return wait

    # -- the story -------------------------------------------------------------------

    def submit(self, i: int) -> None:
        """Request i arrives at the provider: refused, or a free slot, or wait in line."""
        run, now = self.sim.run, self.env._now
        run.provider[i] = self.index
        run.t_dispatch_s[i] = now
        run.attempts[i] += 1
        run.provider_calls += 1
        if self.outages and self.in_outage(now):
            self._refuse(i, self.outage_status, 0.0)
            return
        if self.shed is not None and self.shed[i] and run.attempts[i] == 1:
            self._refuse(i, 429, 1.0)   # flex capacity unavailable: try again later
            return
        if self.buckets:
            retry_after_s = self._over_limit_s(i)
            if retry_after_s:
                self.rate_limited += 1
                self._refuse(i, 429, retry_after_s)
                return
        if self.free_slots:
            self.free_slots -= 1
            self._serve(i)
        else:
            self.waiting.append(i)

    def submit_background(self, i: int) -> None:
        """A fetch on behalf of request i that no one waits for (e.g. an early cache refresh)."""
        self.sim.run.provider_calls += 1
        if self.outages and self.in_outage(self.env.now):
            return
        if self.free_slots:
            self.free_slots -= 1
            self._serve(-1 - i)
        else:
            self.waiting.append(-1 - i)

    def batch_service_s(self, members: list[int]) -> float:
        """One call answering several requests: the first's time to first token, then every answer streamed."""
        if not self.seconds_per_token:
            return float(self.service_s[members].max())
        first = members[0]
        ttft_s = float(self.service_s[first]) - float(self.sim.requests.output_tokens[first]) * self.seconds_per_token
        return ttft_s + float(self.sim.run.output_tokens[members].sum()) * self.seconds_per_token

    def submit_batch(self, members: list[int], service_s: float) -> None:
        """Several requests in one call (request batching): one slot, one service time, own statuses."""
        run, now = self.sim.run, self.env.now
        run.provider_calls += 1          # one call answers every member
        for i in members:
            run.provider[i] = self.index
            run.t_dispatch_s[i] = now
            run.attempts[i] += 1
        if self.outages and self.in_outage(now):
            for i in members:
                self._refuse(i, self.outage_status, 0.0)
            return
        job = (tuple(members), service_s)
        if self.free_slots:
            self.free_slots -= 1
            self._serve(job)
        else:
            self.waiting.append(job)

    def _serve_batch(self, job) -> None:
        members, service_s = job
        run, now = self.sim.run, self.env.now
        for i in members:
            run.queue_ms[i] += (now - run.t_dispatch_s[i]) * 1000.0
            self.sim.on_start(i, self)
            run.status[i] = self._status(i)
            run.service_ms[i] += service_s * 1000.0
        self._after(service_s, members, self._finished)

    def _serve(self, i) -> None:
        self.calls += 1
        if type(i) is tuple:
            self._serve_batch(i)
            return
        if i < 0:  # background fetch: occupies a slot, writes nothing to the ledger row
            self._after(self.service_s[-1 - i], i, self._finished)
            return
        run, now = self.sim.run, self.env._now
        run.queue_ms[i] += (now - run.t_dispatch_s[i]) * 1000.0
        if self.sim._start_hooks:
            self.sim.on_start(i, self)
        service_s = self._service_s[i]      # a Python float: the event clock stays a Python float
        if self.sim.trims_output:   # a capped answer streams fewer tokens
            service_s -= (int(self.sim.requests.output_tokens[i]) - int(run.output_tokens[i])) * self.seconds_per_token
        status = run.status[i] = self._status(i)
        if self.config.error_latency_ms and status != 200:
            service_s = min(self.config.error_latency_ms / 1000.0, service_s)
        run.service_ms[i] += service_s * 1000.0
        self._after(service_s, i, self._finished)

    def _status(self, i: int) -> int:
        """200, or the failure this attempt meets: the first attempt uses the shared draws."""
        if self.sim.run.attempts[i] > 1:
            return 500 if self.config.error_rate and self.retry_rng.random() < self.config.error_rate else 200
        if self.bad is not None and self.bad[i]:
            return 400
        if self.fails is not None and self.fails[i]:
            return 500
        return 200

    def _finished(self, event) -> None:
        i = event.value
        if self.waiting:
            self._serve(self.waiting.popleft())
        else:
            self.free_slots += 1
        if type(i) is tuple:
            for member in i:
                status = int(self.sim.run.status[member])
                self.sim.complete(member, OK if status == 200 else ERROR, status)
            return
        if i < 0:
            self.sim.background_done(-1 - i, self)
            return
        status = int(self.sim.run.status[i])
        self.sim.complete(i, OK if status == 200 else ERROR, status)

    def _refuse(self, i: int, status: int, retry_after_s: float) -> None:
        """Refused without using a slot: answered after `error_latency_ms`."""
        delay_s = self.config.error_latency_ms / 1000.0
        self.sim.run.service_ms[i] += delay_s * 1000.0
        self.sim.retry_after_s[i] = retry_after_s
        self._after(delay_s, (i, status), self._refused)

    def _refused(self, event) -> None:
        i, status = event.value
        self.sim.complete(i, ERROR, status)

    # -- a whole stream with no stages in front: the same FIFO story without SimPy ------------

    def serve_stream(self, now_s: np.ndarray) -> None:
        """Serve every request of the stream, arriving at `now_s`, with no stage in front.

        The stage-free run (the baseline) needs no events: refusals (outages, flex sheds,
        rate limits) depend only on arrival order, and a FIFO c-server queue is the recursion
        start = max(arrival, earliest free slot). Every float is computed as the SimPy path
        computes it (`now_s` is SimPy's clock at each arrival), so the ledger is the same bit
        for bit (tests/providers/test_fast_baseline.py); `Simulation(engine="simpy")` keeps
        the event-by-event reference.
        """
        run, cfg = self.sim.run, self.config
        n = len(now_s)
        run.provider[:] = self.index
        run.t_dispatch_s[:] = now_s
        run.attempts[:] = 1
        run.provider_calls += n                                   # one call a request, refused ones too
        status = np.full(n, 200, dtype=np.int16)
        refused = np.zeros(n, dtype=bool)
        if self.outages:
            down = np.zeros(n, dtype=bool)
            for start, end in self.outages:
                down |= (start <= now_s) & (now_s < end)
            status[down] = self.outage_status
            refused |= down
        if self.shed is not None:
            shed = self.shed & ~refused
            status[shed] = 429
            self.sim.retry_after_s[shed] = 1.0
            refused |= shed
        if self.buckets:
            over = self._limit_stream(now_s, ~refused)
            status[over] = 429
            refused |= over
            self.rate_limited = int(over.sum())
        error_delay_s = cfg.error_latency_ms / 1000.0
        run.service_ms[refused] = error_delay_s * 1000.0
        run.t_done_s[refused] = now_s[refused] + error_delay_s

        served = np.flatnonzero(~refused)
        self.calls = len(served)
        if self.bad is not None:
            status[served[self.bad[served]]] = 400
        if self.fails is not None:
            status[served[self.fails[served] & (status[served] == 200)]] = 500
        service_s = self.service_s[served]
        if cfg.error_latency_ms:
            failed = status[served] != 200
            service_s = np.where(failed, np.minimum(error_delay_s, service_s), service_s)
        arrival_s = now_s[served]
        start_s = _fifo_starts(arrival_s, service_s, cfg.concurrency)
        run.queue_ms[served] = (start_s - arrival_s) * 1000.0
        run.service_ms[served] = service_s * 1000.0
        run.t_done_s[served] = start_s + service_s
        run.status[:] = status
        run.outcome[:] = np.where(status == 200, OK, ERROR)
        quality_model = self.sim.quality_model
        if quality_model is not None:
            ok = np.flatnonzero(status == 200)
            run.quality[ok] = quality_curve(self.info.quality, quality_model.difficulty[ok])

    def _limit_stream(self, now_s: np.ndarray, reaching: np.ndarray) -> np.ndarray:
        """Which of the requests reaching the limits get a 429 (their Retry-After into the sim).

        A vectorized screen first: if every request fits with room to spare when all take their
        share, no 429 happens and the buckets' own float steps cannot decide otherwise. Only a
        stream that comes close to a limit walks the buckets request by request, as submit does.
        """
        idx = np.flatnonzero(reaching)
        usage = {kind: self._usage_array(kind, idx) for _, kind in self.buckets}
        if all(_fits_with_room(b, now_s[idx], usage[kind]) for b, kind in self.buckets):
            for bucket, kind in self.buckets:
                bucket.take(float(usage[kind].sum()))   # not read again; kept for the record
            return np.zeros(len(now_s), dtype=bool)
        over = np.zeros(len(now_s), dtype=bool)
        retry_after_s = self.sim.retry_after_s
        buckets = [(b, usage[kind].tolist()) for b, kind in self.buckets]
        for k, (i, now) in enumerate(zip(idx.tolist(), now_s[idx].tolist())):
            wait = max(b.wait_s(u[k], now) for b, u in buckets)
            if wait == 0.0:
                for b, u in buckets:
                    b.take(u[k])
            else:
                over[i] = True
                retry_after_s[i] = wait
        return over

    def _usage_array(self, kind: str, idx: np.ndarray) -> np.ndarray:
        """`_usage` for many requests at once (float64, as `_usage` returns)."""
        run, req = self.sim.run, self.sim.requests
        if kind == "rpm":
            return np.ones(len(idx))
        if kind == "itpm":
            return run.input_tokens[idx].astype(np.float64)
        if kind == "otpm":
            return req.max_tokens[idx].astype(np.float64)
        return (run.input_tokens[idx] + req.max_tokens[idx]).astype(np.float64)


def _fits_with_room(bucket: TokenBucket, now_s: np.ndarray, usage: np.ndarray) -> bool:
    """True if every request fits `bucket` when all of them take, with a margin for float dust.

    With every request taking, the level before request i is C + Y_i - max_{k<=i} Y_k, where
    Y = rate * t - demand before i (the bucket refilled to its cap at the k of that maximum).
    """
    if not len(usage):
        return True
    demand_before = np.concatenate(([0.0], np.cumsum(usage)[:-1]))
    y = bucket.rate_per_s * now_s - demand_before
    level = bucket.capacity + y - np.maximum.accumulate(y)
    margin = 1e-6 * (bucket.capacity + float(usage.sum()))
    return bool((usage <= level - margin).all())


def _fifo_starts(arrival_s: np.ndarray, service_s: np.ndarray, slots: int) -> np.ndarray:
    """When each request (in arrival order) gets one of `slots` FIFO servers."""
    free_at = [float("-inf")] * slots
    starts = np.empty(len(arrival_s), dtype=np.float64)
    replace = heapq.heapreplace
    for lo in range(0, len(arrival_s), 1 << 16):      # in blocks: Python floats for 64k requests at a time
        block = []
        append = block.append
        for a, s in zip(arrival_s[lo:lo + (1 << 16)].tolist(), service_s[lo:lo + (1 << 16)].tolist()):
            f = free_at[0]
            start = a if a >= f else f
            replace(free_at, start + s)
            append(start)
        starts[lo:lo + len(block)] = block
    return starts
