"""The base every stage extends: a stage passes everything on and saves nothing.

The hooks the simulation calls, and what each must return, are described in
`lab/stages/__init__.py`; this module holds the shared bookkeeping (the stage's bit in the
ledger's flags, what it saved) so that stage modules import it without the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.dists import Dist
from lab.ledger import OK

ON_FAILURE = ("bypass", "reject")


@dataclass(frozen=True)
class Options:
    """Fields every stage takes, whatever its strategy: its name, failure windows and overhead.

    `outages` are [start_s, end_s) windows in which the stage's store or worker is down;
    `on_failure` says what a request meets then: "bypass" (fail open: the stage is skipped,
    the request pays full price) or "reject" (fail closed). `overhead_ms` is what the stage
    itself adds to every request it sees (a key hash, a hop to its store); off by default so
    a scenario that does not ask for it keeps its numbers.
    """

    name: str = ""                                   # how routes and warm/prefetch refer to it
    outages: tuple[tuple[float, float], ...] = ()
    on_failure: str = "bypass"                       # "bypass" | "reject"
    overhead_ms: Dist | None = None                  # None: 0 ms


class Stage:
    """Base of every stage: passes everything on and saves nothing."""

    name = "stage"

    def __init__(self, config, sim, index: int, rng: np.random.Generator):
        self.config, self.sim, self.index, self.rng = config, sim, index, rng
        self.bit = np.uint32(1 << index)
        self.outages = config.outages
        self.bypassed = self.failed_closed = 0
        self._overhead = None
        if config.overhead_ms is not None:   # its own stream, so the stage's other draws do not move
            self._overhead = OverheadDraws(config.overhead_ms, np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0]))

    def down(self, now: float) -> bool:
        """Is the stage's store or worker in one of its outage windows at `now`?"""
        return any(start <= now < end for start, end in self.outages)

    def overhead_ms(self) -> float:
        """The stage's own latency for one request (0 unless `overhead_ms` is set)."""
        return self._overhead.next() if self._overhead is not None else 0.0

    def touch(self, i: int) -> None:
        self.sim.run.stage_flags[i] |= self.bit

    def on_request(self, i: int) -> bool:
        return False

    def on_response(self, i: int) -> None:
        pass

    def served_by(self, result, provider_index: int) -> np.ndarray:
        """Requests this stage touched that provider `provider_index` answered (and billed)."""
        run = result.run
        return (((run.stage_flags & self.bit) != 0) & (run.provider == provider_index)
                & (run.outcome == OK) & (run.answered_by < 0))

    def repriced_saving_usd(self, result, input_tokens, output_tokens) -> float:
        """Price of the touched requests with the given token counts, minus with the ones sent."""
        run, saved = result.run, 0.0
        for k, provider in enumerate(result.providers):
            m = self.served_by(result, k)
            if m.any():
                p = self.sim.price_of(provider)
                saved += float(p.cost_usd(input_tokens[m], output_tokens[m]).sum()
                               - p.cost_usd(run.input_tokens[m], run.output_tokens[m]).sum())
        return saved

    def saved_usd(self, result) -> float:
        """Default: the whole baseline cost of the requests this stage answered."""
        run, base = result.run, result.baseline
        mask = run.answered_by == self.index
        return float(base.cost_usd[mask].sum() - run.cost_usd[mask].sum())

    def stats(self) -> dict:
        """Extra counters shown in the summary under this stage (hits, wrong hits, ...)."""
        return {}

    def failure_stats(self) -> dict:
        """What the outage windows did, for the summary (empty when the stage has none)."""
        if not self.outages:
            return {}
        return {"outage_bypassed": self.bypassed, "outage_rejected": self.failed_closed}


class OverheadDraws:
    """A stage's overhead samples, drawn in numpy blocks (one call per request costs no array)."""

    BLOCK = 1 << 14

    def __init__(self, dist: Dist, rng: np.random.Generator):
        self.dist, self.rng = dist, rng
        self.block, self.k = np.zeros(0), 0

    def next(self) -> float:
        if self.k == len(self.block):
            self.block, self.k = self.dist.sample(self.rng, self.BLOCK), 0
        self.k += 1
        return float(self.block[self.k - 1])
