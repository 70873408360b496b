"""The budget's reservation policy as a lever: the burst of the issue (3,000 requests in 1.5 s, $2.50 a day).

Traffic: 2,000 requests/s Poisson for 3,000 requests (1.48 s), inputs uniform 200–2,000 tokens,
answers uniform 100–900 tokens, max_tokens 4,096, gpt-4o ($2.50 / $10 per million tokens,
genai-prices), each call 0.5–1.5 s. Reserving the worst case (input + 4,096 output tokens)
never overshoots; `queue` then spends >= 95 % of the day's cap on day one. Reserving the
p99 answer (892 tokens: 100 + 0.99 x 800) admits more and uses more of the cap under
`reject`; it can overshoot only if the requests in flight at the last admission together
answer more than they reserved. Since every admission keeps spent + reserved <= cap, the
overshoot probability is at most P(sum_j (out_j - 892) > 0) over those m requests, which the
output distribution gives (1 % for m = 1, vanishing for the m of about two hundred seen here).
"""

from __future__ import annotations

import numpy as np
import pytest

import lab
from lab.dists import Dist

CAP_USD = 2.5
OUTPUT = Dist("uniform", low=100, high=900)


def burst(action: str, reserve: str = "worst", seed: int = 0):
    data = {"name": "burst", "requests": 3000,
            "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 2000.0},
                        "input_tokens": {"dist": "uniform", "low": 200, "high": 2000},
                        "output_tokens": {"dist": "uniform", "low": 100, "high": 900}},
            "providers": [{"name": "openai", "model": "gpt-4o", "concurrency": 100000,
                           "latency_ms": {"dist": "uniform", "low": 500, "high": 1500}}],
            "pipeline": [{"stage": "budget", "daily_usd": CAP_USD, "per": "all", "action": action,
                          "reserve": reserve}]}
    return lab.simulate(lab.scenario_from_dict(data), seed=seed, progress=False)


def day_one_spend(result) -> float:
    led = result.ledger
    return float(led.cost_usd[(led.t_arrival_s + led.latency_ms / 1000) < 86_400].sum())


def test_queue_with_worst_case_reservations_uses_95_pct_of_the_cap_and_never_overshoots():
    r = burst("queue")
    b = r.summary()["by_stage"]["budget"]
    print(f"queue/worst: day one ${day_one_spend(r):.4f} of ${CAP_USD}, utilisation {b['utilisation']:.4f}")
    assert day_one_spend(r) <= CAP_USD + 1e-9
    assert b["utilisation"] >= 0.95 and b["overshoot_usd"] == 0 and b["overshoots"] == 0
    # the ledger dates spend by arrival + float32 latency (ms precision near a day is about 8 ms)
    assert b["utilisation"] == pytest.approx(day_one_spend(r) / CAP_USD, rel=1e-3)


def in_flight_at_last_admission(result) -> int:
    """Admitted requests still unanswered when the last admitted request arrived."""
    led = result.ledger
    admitted = led[led.outcome != "rejected"]
    last = admitted.t_arrival_s.max()
    return int(((admitted.t_arrival_s + admitted.latency_ms / 1000) > last).sum())


def overshoot_bound(m: int, reserve_tokens: int, draws: int = 20_000) -> float:
    """P(the m requests in flight answer more than they reserved), from the output distribution."""
    if m == 1:
        return 1 - (reserve_tokens - OUTPUT.low) / (OUTPUT.high - OUTPUT.low)
    rng = np.random.default_rng(0)
    excess = np.zeros(draws)
    for _ in range(m):
        excess += np.rint(rng.uniform(OUTPUT.low, OUTPUT.high, draws)) - reserve_tokens
    return float(np.mean(excess > 0))


def test_p99_reservations_use_more_of_the_cap_than_worst_and_overshoot_as_predicted():
    worst = burst("reject").summary()["by_stage"]["budget"]
    assert worst["overshoots"] == 0
    rows = []
    for seed in range(20):
        r = burst("reject", "p99", seed)
        b = r.summary()["by_stage"]["budget"]
        m = in_flight_at_last_admission(r)
        rows.append((b["utilisation"], b["overshoots"] > 0, b["overshoot_usd"], m,
                     overshoot_bound(m, b["reserve_output_tokens"])))
        assert b["reserve_output_tokens"] == 892    # ceil(100 + 0.99 * 800)
    used = np.array([row[0] for row in rows])
    overshot = sum(row[1] for row in rows)
    predicted = float(np.mean([row[4] for row in rows]))
    print(f"reject: worst uses {worst['utilisation']:.3f} of the cap; p99 uses {used.mean():.3f} "
          f"(min {used.min():.3f}) over 20 seeds; overshoot in {overshot}/20 seeds "
          f"(total ${sum(row[2] for row in rows):.5f}); in flight at the last admission "
          f"{np.mean([row[3] for row in rows]):.0f} on average; predicted overshoot probability <= {predicted:.2e}")
    assert used.min() > worst["utilisation"]
    # 20 seeds at a predicted probability p: more than 20 p + 3 sd overshoots would refute the bound
    assert overshot <= 20 * predicted + 3 * np.sqrt(20 * predicted * (1 - predicted)) + 1e-9


def test_reserve_percentile_comes_from_the_distribution_and_caps_at_max_tokens():
    from lab.stages.budget import Config, reserve_output_tokens

    class Req:
        max_tokens = np.array([4096, 500], dtype=np.int32)
        output_tokens = np.array([10, 20], dtype=np.int32)

        def __len__(self):
            return 2

    got = reserve_output_tokens(Config(daily_usd=1, reserve="p90"), Req(), Dist("lognormal", median=300, sigma=0.5))
    expected = int(np.ceil(300 * np.exp(0.5 * 1.2815515655446004)))      # z(0.90) = 1.28155
    assert got.tolist() == [expected, 500]


@pytest.mark.parametrize("bad", ["p100", "p0", "worst-case", "99", "p9x"])
def test_a_bad_reserve_is_one_clear_error(bad):
    with pytest.raises(lab.ScenarioError, match="reserve"):
        lab.scenario_from_dict({"name": "x", "requests": 10, "traffic": {"arrivals": {"process": "poisson",
                                                                                   "rate_per_s": 1.0}},
                                "providers": [{"name": "openai", "model": "gpt-4o-mini"}],
                                "pipeline": [{"stage": "budget", "daily_usd": 1, "reserve": bad}]})


def test_the_reservation_curve_a_lesson_draws_uses_more_of_the_cap_as_reservations_shrink(root):
    from lab.lessons.experiments import reservation_curve

    scenario = lab.load_scenario(root / "scenarios" / "budget-reservation-burst.toml")
    curve = reservation_curve(scenario, reserves=("worst", "p99", "p50"), seeds=2)
    print(curve.to_string())
    assert list(curve.index) == ["worst", "p99", "p50"]
    assert curve.utilisation.is_monotonic_increasing and curve.loc["worst", "overshoot_share"] == 0
