"""Each lesson's self-check passes with the reference settings and fails with a wrong one.

Where the expected numbers come from is stated per test: the providers' published prices (via
genai-prices), the token-length distributions of the lesson's scenario, queueing and cache
arithmetic, or a direct computation on the same ledger the check reads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab import lessons
from lab.errors import ConfigError

#: exercises with fixed reference settings (00 and 02 grade a reading of the learner's own run)
STATIC = ["01", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13"]


@pytest.fixture(scope="module")
def chatbot_result():
    return lessons.run(lessons.variant("support-chatbot"), 0, 1500)


@pytest.mark.parametrize("number", STATIC)
def test_reference_passes_and_wrong_fails(number):
    ex = lessons.exercise(number)
    good, bad = ex.check(**ex.reference), ex.check(**ex.wrong)
    assert good.passed, good
    assert not bad.passed, bad
    assert "passed" in good._repr_html_() and "not yet" in bad._repr_html_()
    assert ex.task and ex.lesson == number


def test_every_lesson_has_an_exercise_and_bad_names_are_refused():
    assert sorted(lessons._EXERCISES) == [n for n, _, _ in lessons.LESSONS]
    assert lessons.exercise("3") is lessons.exercise("03")
    with pytest.raises(ConfigError, match="expected one of"):
        lessons.exercise("99")


# --------------------------------------------------------------------------- 00 and 02: reading one's own run


def test_00_reading_the_bill(chatbot_result):
    s = chatbot_result.summary()
    per_1k = 1000 * s["cost_usd"] / s["requests"]                       # the definition, by hand
    top = max(s["by_stage"], key=lambda k: s["by_stage"][k]["cost_saved_usd"])
    ex = lessons.exercise("00")
    assert ex.check(chatbot_result, cost_per_1k_usd=per_1k, top_stage=top).passed
    baseline_per_1k = 1000 * s["baseline_cost_usd"] / s["requests"]    # the tempting wrong bill
    assert not ex.check(chatbot_result, cost_per_1k_usd=baseline_per_1k, top_stage=top).passed
    assert not ex.check(chatbot_result, cost_per_1k_usd=per_1k, top_stage="no-such-stage").passed
    assert not ex.check(chatbot_result, cost_per_1k_usd="cheap", top_stage=top).passed


def test_02_share_without_a_provider_call(chatbot_result):
    led = chatbot_result.ledger
    share = float(((led["outcome"] == "cache_hit") | (led["outcome"] == "deduplicated")).sum() / len(led))
    ex = lessons.exercise("02")
    assert ex.check(chatbot_result, share=share).passed
    hits_only = float((led["outcome"] == "cache_hit").mean())      # forgets the dedup followers
    assert hits_only != share and not ex.check(chatbot_result, share=hits_only).passed
    assert not ex.check(chatbot_result, share=100 * share).passed    # a percentage, not a share


# --------------------------------------------------------------------------- 01: prices


def test_01_cheapest_call_from_published_prices():
    # genai-prices: gemini-2.5-flash-lite $0.10 in / $0.40 out per million; gpt-4o-mini $0.15 / $0.60
    lite = 3000 * 0.10e-6 + 500 * 0.40e-6
    mini = 3000 * 0.15e-6 + 500 * 0.60e-6
    assert math.isclose(lessons.call_cost_usd("google/gemini-2.5-flash-lite", 3000, 500), lite)
    ex = lessons.exercise("01")
    assert ex.check(model="google/gemini-2.5-flash-lite", cost_usd=lite).passed
    assert not ex.check(model="openai/gpt-4o-mini", cost_usd=mini).passed
    assert not ex.check(model="google/gemini-2.5-flash-lite", cost_usd=mini).passed   # right model, wrong sum
    assert not ex.check(model="nobody/nothing", cost_usd=lite).passed


def test_call_costs_apply_cached_and_batch_prices():
    # gpt-4o-mini: cached input $0.075 per million, batch half of $0.15 / $0.60
    row = lessons.call_costs(1800, 200, cached_input_tokens=1536, models=["openai/gpt-4o-mini"]).iloc[0]
    assert math.isclose(row["cached_usd"], 264 * 0.15e-6 + 1536 * 0.075e-6 + 200 * 0.60e-6)
    assert math.isclose(row["batch_usd"], 1800 * 0.075e-6 + 200 * 0.30e-6)


# --------------------------------------------------------------------------- 03: cache theory and sizing


def test_che_approximation_matches_its_fixed_point():
    from scipy.optimize import brentq

    from lab.dists import zipf_probabilities

    q = zipf_probabilities(10_000, 0.9)
    for capacity in (50, 500, 5000):
        t = brentq(lambda t, c=capacity: np.sum(1 - np.exp(-q * t)) - c, 1e-9, 1e12)
        expected = float(np.sum(q * (1 - np.exp(-q * t))))
        assert abs(lessons.che_lru_hit_ratio(10_000, 0.9, capacity) - expected) < 1e-6
    assert lessons.che_lru_hit_ratio(100, 0.9, 100) == 1.0      # everything fits


def test_03_cache_capacity_bounds():
    # LRU is a stack algorithm: its hit ratio never falls as capacity grows, so the smallest
    # capacity reaching 40 % is well defined; too small misses the target, far too big wastes memory.
    ex = lessons.exercise("03")
    assert ex.measure(ex.smallest)["cache_hit_rate"] >= 0.40 > ex.measure(ex.smallest - 1)["cache_hit_rate"]
    assert not ex.check(capacity=ex.smallest // 2).passed
    assert ex.check(capacity=ex.smallest).passed
    assert not ex.check(capacity=2 * ex.smallest).passed
    assert not ex.check(capacity="a lot").passed and not ex.check(capacity=0).passed


# --------------------------------------------------------------------------- 06, 08, 12: arithmetic behind the checks


def test_06_ttl_choice_follows_the_gap_between_requests():
    # One request every 600 s: a 5-minute entry survives a gap with probability 1 - exp(-300/600) = 39 %,
    # so most 1.25x writes are never read; a 1-hour entry survives 1 - exp(-6) = 99.8 % of gaps.
    ex = lessons.exercise("06")
    slow_5m, slow_1h = ex.measure("5m", 1 / 600), ex.measure("1h", 1 / 600)
    assert slow_1h["cost_usd"] < slow_5m["cost_usd"]
    assert slow_5m["block_hit_ratio"] < 0.5 < slow_1h["block_hit_ratio"]
    # at one request a second both caches stay warm and the cheaper 1.25x writes win
    assert ex.measure("5m", 1.0)["cost_usd"] < ex.measure("1h", 1.0)["cost_usd"]
    assert not ex.check(slow="1h", fast="1h").passed and not ex.check(slow="2h", fast="5m").passed


def test_08_max_tokens_window_from_the_distributions():
    # 200,000 TPM / 60 = 3,333 tokens/s; at 2.5 requests/s each request may reserve ~1,333 tokens
    # (input, median 400, plus max_tokens): 4,096 overflows it. Answers are lognormal(median 200,
    # sigma 0.4): P(> 300) = P(z > ln(1.5) / 0.4 = 1.01) = 16 % are cut; P(> 700) = P(z > 3.13) = 0.1 %.
    ex = lessons.exercise("08")
    over, short, right = ex.measure(4096), ex.measure(300), ex.measure(700)
    assert over["error_rate"] > 0.3
    assert 0.12 < short["cut_share"] < 0.20 and short["error_rate"] == 0
    assert right["error_rate"] == 0 and right["cut_share"] < 0.01
    assert not ex.check(max_tokens=300).passed


def test_12_largest_max_tokens_by_hand():
    # Session worst case = ceil(counted prompt x 1.3) x $3/M + max_tokens x $15/M (claude-sonnet-4-5):
    # the largest max_tokens that fits $0.01 follows by solving for it.
    from lab.tokens import count_messages

    counted = count_messages([{"role": "user", "content": lessons.LIVE_PROMPT}], "claude-sonnet-4-5", "anthropic")
    prompt = math.ceil(counted * 1.3)
    largest = math.floor((0.01 - prompt * 3e-6) / 15e-6 + 1e-9)
    ex = lessons.exercise("12")
    assert ex.largest == largest
    assert ex.check(max_tokens=largest).passed
    assert not ex.check(max_tokens=largest + 1).passed
    assert not ex.check(max_tokens=largest // 2).passed      # accepted, but far from the largest


# --------------------------------------------------------------------------- 07, 09, 10, 11, 13


def test_07_cascade_threshold_floor_and_cost():
    # Quality rises with the threshold (more escalations to stronger models) and so does cost.
    ex = lessons.exercise("07")
    low, mid, high = ex.measure(0.5), ex.measure(0.75), ex.measure(0.95)
    assert low["quality_mean"] < 0.85 <= mid["quality_mean"] <= high["quality_mean"]
    assert low["cost_usd"] < mid["cost_usd"] < high["cost_usd"]
    assert not ex.check(threshold=0.95).passed          # quality holds, but pays for needless escalations
    assert not ex.check(threshold=1.5).passed


def test_09_outage_needs_fallback():
    # The outage is 20 of 90 minutes: without fallback about 22 % of requests land in it and fail
    # whatever the retries; with fallback they are served by the second provider.
    ex = lessons.exercise("09")
    assert 0.18 < ex.measure(4, False)["error_rate"] < 0.26
    assert ex.measure(3, True)["error_rate"] <= 0.001
    assert not ex.check(max_attempts=8, fallback=True).passed     # over the allowed attempts
    assert not ex.check(max_attempts=3, fallback="yes").passed


def test_10_concurrency_smallest_meets_the_sla():
    ex = lessons.exercise("10")
    n = ex.smallest
    assert ex.measure(n)["p95_ms"] <= 8000 < ex.measure(n - 1)["p95_ms"]
    assert ex.check(concurrency=n).passed and not ex.check(concurrency=2 * n).passed


def test_11_formula_checked_against_pandas():
    ex = lessons.exercise("11")
    led = ex.ledger
    truth = float(led.loc[led["outcome"] == "ok", "cost_usd"].mean())
    assert math.isclose(ex.measure('mean(cost_usd where outcome == "ok")')["value"], truth, rel_tol=1e-9)
    assert ex.check(formula='sum(cost_usd where outcome == "ok") / count(outcome == "ok")').passed
    broken = ex.check(formula="mean(costs)")          # a parse error is a failed check, not an exception
    assert not broken.passed and "costs" in broken.message


def test_13_reference_is_the_cheapest_feasible_grid_point():
    ex = lessons.exercise("13")
    ref = ex.reference
    best = ex.measure(**ref)
    assert best["quality_mean"] >= 0.95
    for ttl in ex.ttls:                        # nothing cheaper on the grid keeps quality >= 0.95
        for cap in ex.capacities:
            m = ex.measure(ttl, cap)
            assert m["quality_mean"] < 0.95 or m["cost_usd"] >= best["cost_usd"] - 1e-12
    assert not ex.check(ttl_s=7, capacity=500).passed          # not a grid point


def test_variant_changes_a_copy_by_dotted_path():
    base = lessons.scenario_dict("support-chatbot")
    s = lessons.variant(base, {"pipeline[cache].capacity": 123, "traffic.arrivals.rate_per_s": 5.0})
    assert s.pipeline[0].capacity == 123 and s.traffic.arrivals.rate_per_s == 5.0
    assert base["pipeline"][0]["capacity"] == 1000                 # the base is untouched
    assert lessons.variant("support-chatbot", pipeline=[]).pipeline == ()
    with pytest.raises(ConfigError, match="known"):
        lessons.scenario_path("no-such-scenario")


def test_scenarios_found_from_the_notebooks_folder_when_installed(monkeypatch, tmp_path, root):
    # An installed costlab (Binder) has no scenarios/ next to the package; a notebook runs in notebooks/.
    monkeypatch.setattr(lessons.scenarios, "ROOT", tmp_path)
    monkeypatch.chdir(root / "notebooks")
    assert lessons.scenario_path("support-chatbot") == root / "scenarios" / "support-chatbot.toml"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no scenarios/ folder"):
        lessons.scenario_path("support-chatbot")
