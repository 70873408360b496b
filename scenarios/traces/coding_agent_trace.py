"""Generate `coding-agent-loops.jsonl`: one busy hour of a coding agent's tool loops, in Mooncake's format.

Why a generated trace: an agent's cost comes from re-sending a growing context on every
step of its loop (system prompt and tool schemas, the task, then every tool call and tool
result so far). Only a trace with prefix blocks can say which tokens a step shares with
the step before, and Mooncake's JSONL (`timestamp` ms, `input_length`, `output_length`,
`hash_ids`: one id per 512-token block) is the format costlab reads for that.

The workload (all numbers are assumptions of this story, stated here and in the scenario):
- sessions start as a Poisson process, 60 per hour (a team of about 20 developers);
- every prompt begins with the same 6,144-token system prompt and tool definitions
  (12 blocks, shared by all sessions);
- a session adds its task and repository context (lognormal, median 3,000 tokens), then
  loops: the model answers with a tool call (lognormal, median 180 output tokens), the tool's
  result is appended (lognormal, median 1,200 tokens, sigma 1.0: file reads, test logs),
  and the next step sends the whole context again;
- the next step starts after the model's answer (0.6 s + 12 ms per output token) and the
  tool's run (lognormal, median 4 s);
- a session makes 1 + Geometric(1/14) steps (mean 14), and stops early once its context
  passes 120,000 tokens.

Block ids: the shared blocks are 0..11; a session's complete blocks keep their id from step
to step (so the provider can reuse them); a prompt's last, partial block gets a fresh id
(its text differs from the complete block it later becomes). `python coding_agent_trace.py`
rewrites the file; the same seed gives the same bytes (tests check this).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BLOCK_TOKENS = 512
SHARED_TOKENS = 6144
SESSIONS_PER_HOUR = 60
DURATION_S = 3600.0
MEAN_STEPS = 14
MAX_CONTEXT_TOKENS = 120_000
SEED = 20250501
OUT = Path(__file__).with_name("coding-agent-loops.jsonl")


def _lognormal(rng, median: float, sigma: float) -> int:
    return max(1, int(round(median * np.exp(sigma * rng.standard_normal()))))


def session_requests(rng, start_s: float, next_id) -> list[dict]:
    """The requests of one agent session: (time, input, output, block ids) per loop step."""
    context = SHARED_TOKENS + _lognormal(rng, 3000, 0.6)
    steps = 1 + rng.geometric(1.0 / MEAN_STEPS)
    t = start_s
    own_ids: list[int] = []      # ids of this session's complete blocks after the shared ones
    out = []
    for _ in range(steps):
        if t >= DURATION_S or context > MAX_CONTEXT_TOKENS:
            break
        n_blocks = -(-context // BLOCK_TOKENS)
        complete = context // BLOCK_TOKENS
        shared = SHARED_TOKENS // BLOCK_TOKENS
        while shared + len(own_ids) < complete:
            own_ids.append(next_id())
        ids = list(range(shared)) + own_ids[: complete - shared]
        if n_blocks > complete:
            ids.append(next_id())          # the partial last block
        output = _lognormal(rng, 180, 0.5)
        out.append({"timestamp": int(round(t * 1000)), "input_length": int(context),
                    "output_length": int(output), "hash_ids": ids})
        t += 0.6 + 0.012 * output + _lognormal(rng, 4.0, 0.8)
        context += output + _lognormal(rng, 1200, 1.0)
    return out


def generate(seed: int = SEED) -> list[dict]:
    """Every request of the hour, in arrival order."""
    rng = np.random.default_rng(seed)
    counter = iter(range(1_000, 1 << 62))

    def next_id() -> int:
        return next(counter)

    starts = np.sort(rng.uniform(0.0, DURATION_S, rng.poisson(SESSIONS_PER_HOUR * DURATION_S / 3600)))
    rows = []
    for start in starts:
        rows.extend(session_requests(rng, float(start), next_id))
    rows.sort(key=lambda r: r["timestamp"])
    return rows


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, separators=(", ", ": ")) + "\n" for r in rows)


def main(argv=None) -> int:
    text = render(generate())
    OUT.write_text(text, encoding="utf-8")
    rows = text.count("\n")
    print(f"wrote {OUT.name}: {rows:,} requests, {len(text) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
