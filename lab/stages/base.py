"""The base every stage extends: a stage passes everything on and saves nothing.

The hooks the simulation calls, and what each must return, are described in
`lab/stages/__init__.py`; this module holds the shared bookkeeping (the stage's bit in the
ledger's flags, what it saved) so that stage modules import it without the registry.
"""

from __future__ import annotations

import numpy as np

from lab.ledger import OK


class Stage:
    """Base of every stage: passes everything on and saves nothing."""

    name = "stage"

    def __init__(self, config, sim, index: int, rng: np.random.Generator):
        self.config, self.sim, self.index, self.rng = config, sim, index, rng
        self.bit = np.uint32(1 << index)

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
