"""Exercises 08-09: a max_tokens that fits a tokens-per-minute limit; retries and fallback through an outage."""

from __future__ import annotations

import numpy as np

from lab.lessons.checks import Exercise, picked, require, require_number, self_check
from lab.lessons.scenarios import TPM_SCENARIO, variant
from lab.runs import run


class MaxTokens(Exercise):
    lesson, title = "08", "max_tokens against a TPM limit"
    task = ("gpt-4o-mini with a 200,000 tokens-per-minute limit that counts input + max_tokens (3,000 requests at "
            "2.5/s, seed 0). Choose traffic.max_tokens so that no request is refused with a 429 and fewer than "
            "1 % of answers are cut off. Explore with measure(max_tokens=...), then check(max_tokens=...).")
    seed, max_cut = 0, 0.01
    reference = {"max_tokens": 700}
    wrong = {"max_tokens": 4096}

    def measure(self, max_tokens: int) -> dict:
        result = run(variant(TPM_SCENARIO, {"traffic.max_tokens": int(max_tokens)}), self.seed)
        cut = float(np.mean(result.requests.output_tokens >= result.requests.max_tokens))
        return {**picked(result, "error_rate"), "cut_share": cut}

    @self_check
    def check(self, max_tokens=None):
        require_number(max_tokens, "max_tokens", integer=True)
        require(max_tokens >= 1, "max_tokens should be at least 1")
        m = self.measure(int(max_tokens))
        require(m["error_rate"] == 0, f"{100 * m['error_rate']:.1f} % of requests got a 429: every request "
                "reserves its max_tokens against the TPM limit, used or not", m)
        require(m["cut_share"] < self.max_cut, f"{100 * m['cut_share']:.1f} % of answers are cut off: the cap is "
                "below the long answers", m)
        return f"max_tokens {max_tokens}: no 429s and {100 * m['cut_share']:.2f} % cut.", m


class Resilience(Exercise):
    lesson, title = "09", "survive the outage day"
    task = ("On the provider-outage-day scenario (seed 0, all of its 90 minutes), a retry stage with a circuit "
            "breaker after 5 failures. Choose max_attempts (at most 4) and fallback (True/False) so that at most "
            "0.1 % of requests fail. Explore with measure(max_attempts=..., fallback=...), then check(...).")
    seed, max_error_rate, most_attempts = 0, 0.001, 4
    reference = {"max_attempts": 3, "fallback": True}
    wrong = {"max_attempts": 4, "fallback": False}

    def measure(self, max_attempts: int, fallback: bool) -> dict:
        stage = {"stage": "retry", "max_attempts": int(max_attempts), "breaker_failures": 5, "fallback": bool(fallback)}
        return picked(run(variant("provider-outage-day", pipeline=[stage]), self.seed),
                      "error_rate", "reduction_pct", "p95_ms")

    @self_check
    def check(self, max_attempts=None, fallback=None):
        require_number(max_attempts, "max_attempts", integer=True)
        require(isinstance(fallback, bool), f"fallback should be True or False, got {fallback!r}")
        require(1 <= max_attempts <= self.most_attempts, "max_attempts should be between 1 and 4 (more attempts "
                "only hammer a provider that is down)")
        m = self.measure(max_attempts, fallback)
        hint = ("no number of retries outlasts a 20-minute outage: send the traffic somewhere else"
                if not fallback else "transient errors need another attempt or two")
        require(m["error_rate"] <= self.max_error_rate, f"{100 * m['error_rate']:.2f} % failed: {hint}", m)
        return (f"{100 * m['error_rate']:.3f} % failed; the bill is {-m['reduction_pct']:.1f} % above list price "
                "(the fallback model is dearer): resilience has a price.", m)
