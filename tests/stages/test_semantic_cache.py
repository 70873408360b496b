"""Semantic cache: the threshold trades hits for wrong answers; exact wording is always a correct hit."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import ONE_PROMPT, sim


def semantic(threshold, requests=40_000):
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 50.0},
               "prompts": {"catalog": 200, "paraphrases": 5, "popularity": {"dist": "zipf", "alpha": 0.8},
                           "similarity": {"dist": "uniform", "low": 0.6, "high": 1.0}}}
    return sim([{"stage": "semantic_cache", "threshold": threshold}], requests=requests, latency_ms=1,
               traffic=traffic)


def test_semantic_threshold_trades_hits_for_wrong_answers():
    results = {t: semantic(t).summary() for t in (0.7, 0.8, 0.95)}
    hit_rates = [results[t]["cache_hit_rate"] for t in (0.7, 0.8, 0.95)]
    assert hit_rates[0] > hit_rates[1] > hit_rates[2]
    # wrong share of similar (non-exact) hits follows GPTCache's reported 9 % at 0.8 and 6 % at 0.95
    for t, expected in ((0.8, 0.09), (0.95, 0.06)):
        st = results[t]["by_stage"]["semantic_cache"]
        share = st["wrong_hits"] / st["similar_hits"]
        se = np.sqrt(expected * (1 - expected) / st["similar_hits"])
        assert abs(share - expected) < 4 * se + 0.005, (t, share)
        # a wrong answer has quality 0, so mean quality falls by the wrong hits' share of all requests
        assert results[t]["quality_mean"] == pytest.approx(1 - st["wrong_hits"] / results[t]["requests"], abs=1e-6)



def test_exact_wording_is_always_a_correct_hit():
    traffic = {"arrivals": {"process": "poisson", "rate_per_s": 5.0}, **ONE_PROMPT}
    r = sim([{"stage": "semantic_cache", "threshold": 0.99}], requests=500, latency_ms=1, traffic=traffic)
    st = r.summary()["by_stage"]["semantic_cache"]
    assert st["exact_hits"] == 499 and st["wrong_hits"] == 0
