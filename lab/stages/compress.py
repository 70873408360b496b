"""Prompt compression and output caps: send fewer tokens, at a documented quality cost.

The story: before a request leaves, its conversation history is trimmed to a token budget
(`max_input_tokens`, never cutting the shared system prompt), redundant context is
stripped (`strip_share` of what remains after the system prompt), and its `max_tokens`
is capped (`max_output_tokens`): an answer longer than the cap is cut off.

Quality penalty per request, following the seed design's PromptCompressor, which labels
a compression's impact none / minimal / moderate: removing under 10 % of the prompt costs
nothing, under 30 % costs 0.02, more costs 0.05 (`penalties`); a cut-off answer costs
`truncation_penalty` (0.3, an assumption: a truncated answer is often unusable). The
penalty multiplies the answer's quality: quality x (1 - penalty).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import Table
from lab.ledger import OK
from lab.stages.base import Options, Stage

NAME = "compress"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("penalties", "truncation_penalty")


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    max_input_tokens: int | None = None
    strip_share: float = 0.0
    max_output_tokens: int | None = None
    penalties: tuple[float, float, float] = (0.0, 0.02, 0.05)    # none (<10 %), minimal (<30 %), moderate
    truncation_penalty: float = 0.3


def parse(t: Table) -> Config:
    c = Config(max_input_tokens=t.integer("max_input_tokens", Config.max_input_tokens, min=1),
               strip_share=t.probability("strip_share", Config.strip_share),
               max_output_tokens=t.integer("max_output_tokens", Config.max_output_tokens, min=1),
               penalties=t.numbers("penalties", Config.penalties, min=0.0),
               truncation_penalty=t.probability("truncation_penalty", Config.truncation_penalty))
    if len(c.penalties) != 3:
        t.fail("penalties", "expected three numbers: none, minimal and moderate impact")
    if c.max_input_tokens is None and not c.strip_share and c.max_output_tokens is None:
        t.fail("max_input_tokens", "give max_input_tokens, strip_share and/or max_output_tokens")
    return c


class CompressStage(Stage):
    name = NAME
    changes_output_tokens = True     # providers then stream the capped length

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.penalty: dict[int, float] = {}
        self.input_saved_tokens = self.output_saved_tokens = self.truncated = 0

    def on_request(self, i: int) -> bool:
        c, run, req = self.config, self.sim.run, self.sim.requests
        original = int(run.input_tokens[i])
        keep_prefix = int(req.prefix_tokens[i])
        tokens = original
        if c.max_input_tokens is not None:
            tokens = max(min(tokens, c.max_input_tokens), min(keep_prefix, original))
        if c.strip_share:
            tokens = keep_prefix + round((tokens - keep_prefix) * (1 - c.strip_share))
        tokens = max(tokens, 1)
        removed = original - tokens
        share = removed / original
        penalty = c.penalties[0] if share < 0.10 else c.penalties[1] if share < 0.30 else c.penalties[2]
        out = int(run.output_tokens[i])
        if c.max_output_tokens is not None and out > c.max_output_tokens:
            self.output_saved_tokens += out - c.max_output_tokens
            run.output_tokens[i] = c.max_output_tokens
            self.truncated += 1
            penalty = 1 - (1 - penalty) * (1 - c.truncation_penalty)
        if removed or run.output_tokens[i] != out:
            run.input_tokens[i] = tokens
            self.input_saved_tokens += removed
            self.touch(i)
            if penalty:
                self.penalty[i] = penalty
        return False

    def on_response(self, i: int) -> bool:
        penalty = self.penalty.pop(i, None)
        if penalty is not None and self.sim.run.outcome[i] == OK:
            self.sim.run.quality[i] *= 1 - penalty
        return False

    def saved_usd(self, result) -> float:
        """Price of the original tokens minus price of the sent ones, on the requests it touched."""
        return self.repriced_saving_usd(result, result.requests.input_tokens, result.requests.output_tokens)

    def stats(self) -> dict:
        return {"input_tokens_saved": self.input_saved_tokens, "output_tokens_saved": self.output_saved_tokens,
                "truncated_answers": self.truncated}


Stage = CompressStage
