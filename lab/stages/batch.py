"""Request batching: collect requests for a moment and send them to the model as one call.

The story (an analytics dashboard asks 20 widget questions at once): requests to the same
model with the same system prompt wait up to `window_ms` — or until `max_batch_size` have
gathered, or until waiting longer would make the first of them miss the SLA — and go
out as a single call. The system prompt and `overhead_tokens` of batching instructions
are sent once per batch instead of once per request, split evenly over the members' bills;
the answers are generated one after another, so the call takes longer (time to first
token + all members' output tokens / tokens-per-second). Each member can still fail on its
own; a `retry` stage after this one re-sends failed members individually.
`adaptive = true` shortens the window when traffic is too thin to fill a batch in time.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import Table
from lab.stages.base import Options, Stage

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "batch"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("overhead_tokens",)


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    window_ms: float = 200.0
    max_batch_size: int = 20
    overhead_tokens: int = 50          # "answer each item separately" instructions, once per batch (assumption)
    sla_aware: bool = True
    adaptive: bool = False


def parse(t: Table) -> Config:
    return Config(window_ms=t.number("window_ms", Config.window_ms, min=0.0),
                  max_batch_size=t.integer("max_batch_size", Config.max_batch_size, min=1),
                  overhead_tokens=t.integer("overhead_tokens", Config.overhead_tokens, min=0),
                  sla_aware=t.boolean("sla_aware", Config.sla_aware),
                  adaptive=t.boolean("adaptive", Config.adaptive))


class OpenBatch:
    """Requests gathered for one model and system prompt, and the flush scheduled for them."""

    __slots__ = ("members", "opened_s", "token")

    def __init__(self, opened_s: float, token: int):
        self.members: list[int] = []
        self.opened_s, self.token = opened_s, token


class BatchStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.open: dict[tuple[int, int], OpenBatch] = {}
        self.gap_s: dict[tuple[int, int], float] = {}      # EWMA of inter-arrival gaps per key
        self.last_s: dict[tuple[int, int], float] = {}
        self.tokens = 0
        self.batches = self.members = self.early_flushes = 0
        self.sent_alone: dict[int, int] = {}     # member -> input tokens it would have sent alone

    def expected_service_s(self, k: int, members: list[int]) -> float:
        provider = self.sim.providers[k]
        out = float(self.sim.run.output_tokens[members].sum())
        return provider.info.ttft_ms / 1000.0 + out / provider.info.tokens_per_s

    def on_request(self, i: int) -> bool:
        sim, now, c = self.sim, self.sim.env.now, self.config
        key = (int(sim.target[i]), int(sim.requests.prefix_id[i]))
        if c.adaptive:
            last = self.last_s.get(key)
            if last is not None:
                gap = now - last
                self.gap_s[key] = 0.8 * self.gap_s.get(key, gap) + 0.2 * gap
            self.last_s[key] = now
        batch = self.open.get(key)
        if batch is None:
            self.tokens += 1
            batch = self.open[key] = OpenBatch(now, self.tokens)
            window_s = c.window_ms / 1000.0
            if c.adaptive and key in self.gap_s:
                window_s = min(window_s, (c.max_batch_size - 1) * self.gap_s[key])
            sim.env.timeout(window_s, (key, batch.token)).callbacks.append(self._timer)
        batch.members.append(i)
        self.touch(i)
        if len(batch.members) >= c.max_batch_size:
            self.flush(key)
        elif c.sla_aware and sim.scenario.sla.limit_ms:
            deadline_s = sim.requests.t_arrival_s[batch.members[0]] + sim.scenario.sla.limit_ms / 1000.0
            left_s = batch.opened_s + c.window_ms / 1000.0 - now
            if now + left_s + self.expected_service_s(key[0], batch.members) > deadline_s:
                self.early_flushes += 1
                self.flush(key)
        return True

    def _timer(self, event) -> None:
        key, token = event.value
        batch = self.open.get(key)
        if batch is not None and batch.token == token:
            self.flush(key)

    def flush(self, key) -> None:
        batch = self.open.pop(key)
        members = batch.members
        sim, run, req = self.sim, self.sim.run, self.sim.requests
        n = len(members)
        self.batches += 1
        self.members += n
        if n > 1:
            # the system prompt and the batching instructions are sent once, split over the members
            prefix = int(req.prefix_tokens[members[0]])
            shared = prefix + self.config.overhead_tokens
            share, extra = divmod(shared, n)
            for m, i in enumerate(members):
                self.sent_alone[i] = int(run.input_tokens[i])
                run.input_tokens[i] = run.input_tokens[i] - prefix + share + (1 if m < extra else 0)
        provider = sim.providers[key[0]]
        provider.submit_batch(members, provider.batch_service_s(members))

    def saved_usd(self, result) -> float:
        """Price of each member as sent alone minus its share of the batch, over answered members."""
        run = result.run
        alone_tokens = run.input_tokens.copy()
        for i, tokens in self.sent_alone.items():
            alone_tokens[i] = tokens
        return self.repriced_saving_usd(result, alone_tokens, run.output_tokens)

    def stats(self) -> dict:
        return {"batches": self.batches, "mean_batch_size": self.members / self.batches if self.batches else 0.0,
                "early_flushes_for_sla": self.early_flushes}


Stage = BatchStage
